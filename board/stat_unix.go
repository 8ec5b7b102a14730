package board

import (
	"io/fs"
	"syscall"
)

func statIDs(info fs.FileInfo) (ino, nlink uint64) {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Ino, uint64(st.Nlink)
	}
	return 0, 0
}
