package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
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
	const fileSize = 256 << 20
	pf, err := newProbeFile(dir, fileSize)
	if err != nil {
		return nil, err
	}
	defer pf.close()
	res := &DiskResult{Pages: pages, FileMiB: fileSize >> 20, PageSize: probePageSize}
	for i := 0; i < tries; i++ {
		d, err := pf.commit(1)
		if err != nil {
			return nil, err
		}
		res.OnePage = append(res.OnePage, ms(d))
		if d, err = pf.commit(pages); err != nil {
			return nil, err
		}
		res.Scatter = append(res.Scatter, ms(d))
	}
	return res, nil
}

// MeasureCommit times tries commits of pages random 4 KiB pages of a file
// of fileBytes in dir, in ms. Benchmark 3 sizes the file as its data files
// were at the end of its runs: a fresh data file's commits land anywhere
// below its high-water mark, and no further.
func MeasureCommit(dir string, fileBytes int64, pages, tries int) ([]float64, error) {
	pf, err := newProbeFile(dir, max(2*probePageSize, (fileBytes+probePageSize-1)/probePageSize*probePageSize))
	if err != nil {
		return nil, err
	}
	defer pf.close()
	var out []float64
	for i := 0; i < tries; i++ {
		d, err := pf.commit(pages)
		if err != nil {
			return nil, err
		}
		out = append(out, ms(d))
	}
	return out, nil
}

const probePageSize = 4096

// probeFile is a scratch file written whole (no holes), committed to the
// way bbolt commits.
type probeFile struct {
	f    *os.File
	path string
	size int64
	r    *rand.Rand
	page []byte
}

func newProbeFile(dir string, size int64) (*probeFile, error) {
	path := filepath.Join(dir, "disk-probe.tmp")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	chunk := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(chunk)) {
		if _, err := f.WriteAt(chunk[:min(int64(len(chunk)), size-off)], off); err != nil {
			f.Close()
			os.Remove(path)
			return nil, err
		}
	}
	if err := syscall.Fdatasync(int(f.Fd())); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return &probeFile{f: f, path: path, size: size, r: rand.New(rand.NewPCG(1, 2)), page: make([]byte, probePageSize)}, nil
}

func (p *probeFile) close() {
	p.f.Close()
	os.Remove(p.path)
}

// commit writes n random pages (in ascending order, as bbolt writes a
// transaction's pages), fdatasyncs, writes the meta page (page 0) and
// fdatasyncs again.
func (p *probeFile) commit(n int) (time.Duration, error) {
	offs := make([]int64, n)
	for i := range offs {
		offs[i] = int64(1+p.r.IntN(int(p.size/probePageSize)-1)) * probePageSize
	}
	slices.Sort(offs)
	start := time.Now()
	for _, off := range offs {
		if _, err := p.f.WriteAt(p.page, off); err != nil {
			return 0, err
		}
	}
	if err := syscall.Fdatasync(int(p.f.Fd())); err != nil {
		return 0, err
	}
	if _, err := p.f.WriteAt(p.page, 0); err != nil { // the meta page
		return 0, err
	}
	if err := syscall.Fdatasync(int(p.f.Fd())); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// MemoryDir returns a directory in memory (tmpfs) for runs without the disk,
// or "" when there is none: /dev/shm, when it is a writable tmpfs.
func MemoryDir() string {
	const tmpfsMagic = 0x01021994
	var st syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &st); err != nil || st.Type != tmpfsMagic {
		return ""
	}
	if err := syscall.Access("/dev/shm", 2 /* W_OK */); err != nil {
		return ""
	}
	return "/dev/shm"
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
