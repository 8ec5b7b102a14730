package dedupe

// LinkByName makes applies check and link kept files by name, as on kernels that refuse to link a
// descriptor, until the returned function restores the default.
func LinkByName() (restore func()) {
	linkDescriptors = false
	return func() { linkDescriptors = true }
}
