package dedupe

// LinkByName makes applies check and link kept files by name, as on kernels that refuse to link a
// descriptor, until the returned function restores the default.
func LinkByName() (restore func()) {
	linkDescriptors = false
	return func() { linkDescriptors = true }
}

// HoldAtMost caps the read descriptors a ScanApply keeps open for the actions at n until the
// returned function restores the default.
func HoldAtMost(n int64) (restore func()) {
	old := maxHeldReads
	maxHeldReads = n
	return func() { maxHeldReads = old }
}
