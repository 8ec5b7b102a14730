package repro

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// junitSchema is the JUnit XML schema CI systems read (Jenkins' junit-10.xsd, which GitLab and
// GitHub test reporters accept): per element, its attributes (required ones marked), the kind of
// each value, and the children it may hold.
var junitSchema = map[string]struct {
	attrs    map[string]string // name -> "int", "decimal", "string"; a leading "!" marks it required
	children []string
}{
	"testsuites": {map[string]string{"name": "string", "time": "decimal", "tests": "int", "failures": "int", "disabled": "int", "errors": "int"}, []string{"testsuite"}},
	"testsuite": {map[string]string{"name": "!string", "tests": "!int", "failures": "!int", "errors": "!int", "time": "!decimal",
		"disabled": "int", "skipped": "int", "timestamp": "string", "hostname": "string", "id": "string", "package": "string"},
		[]string{"properties", "testcase", "system-out", "system-err"}},
	"properties": {map[string]string{}, []string{"property"}},
	"property":   {map[string]string{"name": "!string", "value": "!string"}, nil},
	"testcase": {map[string]string{"name": "!string", "classname": "string", "time": "decimal", "assertions": "string", "status": "string"},
		[]string{"skipped", "error", "failure", "system-out", "system-err"}},
	"failure":    {map[string]string{"message": "string", "type": "string"}, nil},
	"error":      {map[string]string{"message": "string", "type": "string"}, nil},
	"skipped":    {map[string]string{"message": "string"}, nil},
	"system-out": {map[string]string{}, nil},
	"system-err": {map[string]string{}, nil},
}

// validateJUnit walks the document with a real XML parser and checks every element, attribute and
// value against junitSchema, and that each suite's counts match its cases.
func validateJUnit(doc []byte) error {
	d := xml.NewDecoder(bytes.NewReader(doc))
	var stack []string
	type counts struct{ tests, failures, errors, cases, failed, errored int }
	var suite *counts
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			name := t.Name.Local
			el, ok := junitSchema[name]
			if !ok {
				return fmt.Errorf("element <%s> is not in the schema", name)
			}
			if len(stack) == 0 && name != "testsuites" {
				return fmt.Errorf("root <%s>, want <testsuites>", name)
			}
			if len(stack) > 0 && !slices.Contains(junitSchema[stack[len(stack)-1]].children, name) {
				return fmt.Errorf("<%s> may not hold <%s>", stack[len(stack)-1], name)
			}
			seen := map[string]string{}
			for _, a := range t.Attr {
				kind, ok := el.attrs[a.Name.Local]
				if !ok {
					return fmt.Errorf("<%s %s=>: attribute not in the schema", name, a.Name.Local)
				}
				switch strings.TrimPrefix(kind, "!") {
				case "int":
					if _, err := strconv.Atoi(a.Value); err != nil {
						return fmt.Errorf("<%s %s=%q>: not an integer", name, a.Name.Local, a.Value)
					}
				case "decimal":
					if _, err := strconv.ParseFloat(a.Value, 64); err != nil || strings.ContainsAny(a.Value, "eE") {
						return fmt.Errorf("<%s %s=%q>: not a decimal", name, a.Name.Local, a.Value)
					}
				}
				seen[a.Name.Local] = a.Value
			}
			for a, kind := range el.attrs {
				if _, ok := seen[a]; strings.HasPrefix(kind, "!") && !ok {
					return fmt.Errorf("<%s>: required attribute %s missing", name, a)
				}
			}
			switch name {
			case "testsuite":
				suite = &counts{}
				suite.tests, _ = strconv.Atoi(seen["tests"])
				suite.failures, _ = strconv.Atoi(seen["failures"])
				suite.errors, _ = strconv.Atoi(seen["errors"])
			case "testcase":
				suite.cases++
			case "failure":
				suite.failed++
			case "error":
				suite.errored++
			}
			stack = append(stack, name)
		case xml.EndElement:
			if t.Name.Local == "testsuite" {
				if suite.tests != suite.cases || (suite.failures > 0) != (suite.failed > 0) || (suite.errors > 0) != (suite.errored > 0) {
					return fmt.Errorf("testsuite counts %+v do not match its cases", *suite)
				}
			}
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 && len(bytes.TrimSpace(t)) > 0 && junitSchema[stack[len(stack)-1]].children != nil {
				return fmt.Errorf("<%s> holds text", stack[len(stack)-1])
			}
		}
	}
	return nil
}

// TestJUnitValidates: the JUnit file of a matrix with passing, failing (--ci) and erroring cells
// validates against the schema, and reads back with one case per cell, the failures where CI puts
// them and the counts as properties.
func TestJUnitValidates(t *testing.T) {
	res := Result{Seconds: 12.5, Cells: []Cell{
		{Scenario: Clean, Strategy: Legacy, Checks: 40, Seconds: 1.2, TruthOK: true},
		{Scenario: LockDrop, Strategy: ServePrefix + "python3 guard.py --serve", Checks: 17, CorruptVerdicts: 13, GuardDamage: 2,
			GuardDamageDetail: []string{"3 writers died with SQLITE_CORRUPT (11)", "x & <y>"}, WriterErrors: map[string]int{"SQLITE_CORRUPT (11)": 3},
			Notes: []string{"writers: <malformed> & more"}, Seconds: 1.6},
		{Scenario: Injected, Strategy: Doctor, Error: "prober: boom", Seconds: 0.4},
	}}
	CI(&res)
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, res); err != nil {
		t.Fatal(err)
	}
	if err := validateJUnit(buf.Bytes()); err != nil {
		t.Fatalf("invalid JUnit: %v\n%s", err, buf.String())
	}
	var doc junitSuites
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	byName := map[string]junitSuite{}
	for _, s := range doc.Suites {
		byName[s.Cases[0].Name] = s
	}
	if len(doc.Suites) != len(res.Cells)+1 || doc.Tests != len(doc.Suites) {
		t.Fatalf("%d suites (%d tests) for %d cells plus repro/ci", len(doc.Suites), doc.Tests, len(res.Cells))
	}
	dmg := byName[res.Cells[1].Name()]
	if len(dmg.Cases[0].Failures) != 1 || !strings.Contains(dmg.Cases[0].Failures[0].Text, "damaged the board") {
		t.Errorf("damaging cell: failures %+v", dmg.Cases[0].Failures)
	}
	if !slices.Contains(dmg.Properties, junitProperty{"guard_damage", "2"}) || !slices.Contains(dmg.Properties, junitProperty{"writer_errors SQLITE_CORRUPT (11)", "3"}) {
		t.Errorf("damaging cell: properties %+v", dmg.Properties)
	}
	if byName["injected/doctor"].Errors != 1 || len(byName["injected/doctor"].Cases[0].Failures) != 0 {
		t.Errorf("harness error: %+v", byName["injected/doctor"])
	}
	if byName["clean/legacy"].Failures != 0 || byName["repro/ci"].Failures != 1 {
		t.Errorf("clean/legacy %+v, repro/ci %+v", byName["clean/legacy"], byName["repro/ci"])
	}
	if doc.Failures != 2 || doc.Errors != 1 {
		t.Errorf("totals: %d failures %d errors, want 2 and 1", doc.Failures, doc.Errors)
	}
}

// TestJUnitValidatorRejects: the validator is not a rubber stamp.
func TestJUnitValidatorRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown element":   `<testsuites><testsuite name="a" tests="1" failures="0" errors="0" time="1"><testcase name="x"><oops/></testcase></testsuite></testsuites>`,
		"missing attribute": `<testsuites><testsuite name="a" tests="1" failures="0" time="1"><testcase name="x"/></testsuite></testsuites>`,
		"bad number":        `<testsuites><testsuite name="a" tests="one" failures="0" errors="0" time="1"><testcase name="x"/></testsuite></testsuites>`,
		"wrong count":       `<testsuites><testsuite name="a" tests="2" failures="0" errors="0" time="1"><testcase name="x"/></testsuite></testsuites>`,
		"properties in case": `<testsuites><testsuite name="a" tests="1" failures="0" errors="0" time="1"><testcase name="x">` +
			`<properties><property name="n" value="1"/></properties></testcase></testsuite></testsuites>`,
		"not xml": `<testsuites><testsuite`,
	} {
		if err := validateJUnit([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
