package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DiskResult is what the data file's disk costs, in ms per try: a commit
// the way bbolt commits (write the changed pages, fdatasync, write the meta
// page, fdatasync again) of one page, and of Pages pages scattered over a
// large file.
type DiskResult struct {
	Pages             int // pages of the scattered commit
	OnePage, Scatter  []float64
	FileMiB, PageSize int
}

// MeasureDisk times commits on a scratch file in dir (the data files'
// filesystem): tries commits of one 4 KiB page, and tries commits of pages
// random 4 KiB pages of a 256 MiB file.
func MeasureDisk(dir string, pages, tries int) (*DiskResult, error) {
	const fileSize, pageSize = 256 << 20, 4096
	path := filepath.Join(dir, "disk-probe.tmp")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer os.Remove(path)
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for off := int64(0); off < fileSize; off += int64(len(chunk)) {
		if _, err := f.WriteAt(chunk, off); err != nil {
			return nil, err
		}
	}
	if err := syscall.Fdatasync(int(f.Fd())); err != nil {
		return nil, err
	}
	res := &DiskResult{Pages: pages, FileMiB: fileSize >> 20, PageSize: pageSize}
	page := make([]byte, pageSize)
	r := rand.New(rand.NewPCG(1, 2))
	commit := func(n int) (time.Duration, error) {
		start := time.Now()
		for i := 0; i < n; i++ {
			if _, err := f.WriteAt(page, int64(1+r.IntN(fileSize/pageSize-1))*pageSize); err != nil {
				return 0, err
			}
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return 0, err
		}
		if _, err := f.WriteAt(page, 0); err != nil { // the meta page
			return 0, err
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
	for i := 0; i < tries; i++ {
		d, err := commit(1)
		if err != nil {
			return nil, err
		}
		res.OnePage = append(res.OnePage, ms(d))
		if d, err = commit(pages); err != nil {
			return nil, err
		}
		res.Scatter = append(res.Scatter, ms(d))
	}
	return res, nil
}

// IO is a process's storage I/O as /proc/<pid>/io counts it.
type IO struct {
	// WriteBytes the process caused to be sent to storage (pages it
	// dirtied); Syscw write-like system calls (files and sockets).
	WriteBytes, Syscw int64
}

// ReadIO reads /proc/<pid>/io.
func ReadIO(pid int) (IO, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		return IO{}, err
	}
	var io IO
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "write_bytes":
			io.WriteBytes, found = n, found+1
		case "syscw":
			io.Syscw, found = n, found+1
		}
	}
	if found != 2 {
		return io, fmt.Errorf("/proc/%d/io: no write_bytes or syscw", pid)
	}
	return io, nil
}
