package boltstore

import (
	"encoding/binary"
	"fmt"
	"os"
)

// bbolt checks a file (Tx.Check) on a goroutine of its own, through the
// file's memory map: a damaged page that points outside the map faults
// there, and a fault on a goroutine that did not ask for it to be a panic
// (debug.SetPanicOnFault) ends the process. A page that claims four
// billion overflow pages makes the check allocate for each. So verify first
// walks the page tree itself, reading the file rather than the map, and
// checks what the check would otherwise trust: that every page it reaches
// lies below the high-water mark and is reached once, holds its own id, is
// a branch or a leaf, and that every element, key and value lies within
// its page.

// bbolt's page layout (format version 2), in the machine's byte order.
const (
	pageHeaderSize  = 16 // id u64, flags u16, count u16, overflow u32
	pageElementSize = 16 // branch: pos, ksize u32, child u64; leaf: flags, pos, ksize, vsize u32
	bucketHeader    = 16 // root u64 (0: inline, the page follows), sequence u64

	branchPage   = 0x01
	leafPage     = 0x02
	freelistPage = 0x10
	bucketLeaf   = 0x01 // a leaf element that is a nested bucket

	noFreelist = ^uint64(0) // a meta's free list when it is not synced
)

// pageWalk is one walk of a file's page tree.
type pageWalk struct {
	f        *os.File
	pageSize int
	hwm      uint64 // the high-water mark: pages at or past it are not in use
	seen     map[uint64]bool
}

// checkPages walks the page tree of the bbolt file at path from root, the
// root bucket's page, reading hwm pages of pageSize bytes at most, then
// the free list page named by the meta page of transaction txid.
func checkPages(path string, pageSize int, hwm, root, txid uint64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := &pageWalk{f: f, pageSize: pageSize, hwm: hwm, seen: map[uint64]bool{}}
	if err := w.page(root); err != nil {
		return err
	}
	return w.freelist(root, txid)
}

// freelist checks the free list page of the meta page of transaction
// txid: bbolt frees it with its overflow pages on the next commit, and
// hands out the ids it holds, so both must lie within the pages in use.
func (w *pageWalk) freelist(root, txid uint64) error {
	var id uint64
	found := false
	for m := range int64(2) {
		meta := make([]byte, pageHeaderSize+56)
		if _, err := w.f.ReadAt(meta, m*int64(w.pageSize)); err != nil {
			return fmt.Errorf("meta page %d: %w", m, err)
		}
		// The root bucket's page at 32, the free list at 48, the
		// transaction id at 64.
		if binary.NativeEndian.Uint64(meta[64:]) == txid && binary.NativeEndian.Uint64(meta[32:]) == root {
			id, found = binary.NativeEndian.Uint64(meta[48:]), true
			break
		}
	}
	if !found || id == noFreelist {
		return nil
	}
	p, err := w.read(id)
	if err != nil {
		return fmt.Errorf("free list %w", err)
	}
	if flags := binary.NativeEndian.Uint16(p[8:]); flags != freelistPage {
		return fmt.Errorf("free list page %d: not a free list (flags %#x)", id, flags)
	}
	start, count := uint64(0), uint64(binary.NativeEndian.Uint16(p[10:]))
	if count == 0xFFFF { // the count is the first element
		start, count = 1, binary.NativeEndian.Uint64(p[pageHeaderSize:])
	}
	if count > uint64(len(p)-pageHeaderSize)/8-start {
		return fmt.Errorf("free list page %d: its %d ids do not fit in it", id, count)
	}
	for i := range count {
		free := binary.NativeEndian.Uint64(p[pageHeaderSize+(start+i)*8:])
		if free < 2 || free >= w.hwm {
			return fmt.Errorf("free list page %d: frees page %d, outside the pages in use", id, free)
		}
	}
	return nil
}

// page reads page id and walks it.
func (w *pageWalk) page(id uint64) error {
	p, err := w.read(id)
	if err != nil {
		return err
	}
	return w.walk(id, p)
}

// read reads page id with its overflow pages, once: it must lie within
// the pages in use (pages 0 and 1 are the meta pages), not have been read
// before, and hold its own id.
func (w *pageWalk) read(id uint64) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, fmt.Errorf("page %d: outside the pages in use (2 to %d)", id, w.hwm-1)
	}
	if w.seen[id] {
		return nil, fmt.Errorf("page %d: reached twice", id)
	}
	w.seen[id] = true
	header := make([]byte, pageHeaderSize)
	if _, err := w.f.ReadAt(header, int64(id)*int64(w.pageSize)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	if got := binary.NativeEndian.Uint64(header); got != id {
		return nil, fmt.Errorf("page %d: holds the id %d", id, got)
	}
	overflow := uint64(binary.NativeEndian.Uint32(header[12:]))
	if overflow >= w.hwm-id {
		return nil, fmt.Errorf("page %d: %d overflow pages run past the pages in use", id, overflow)
	}
	p := make([]byte, (overflow+1)*uint64(w.pageSize))
	if _, err := w.f.ReadAt(p, int64(id)*int64(w.pageSize)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return p, nil
}

// walk checks the elements of page p (page id's, or an inline bucket's in
// one of its values), and walks the pages they lead to.
func (w *pageWalk) walk(id uint64, p []byte) error {
	if len(p) < pageHeaderSize {
		return fmt.Errorf("page %d: an inline bucket of %d bytes", id, len(p))
	}
	flags, count := binary.NativeEndian.Uint16(p[8:]), int(binary.NativeEndian.Uint16(p[10:]))
	if flags != branchPage && flags != leafPage {
		return fmt.Errorf("page %d: neither a branch nor a leaf (flags %#x)", id, flags)
	}
	if pageHeaderSize+count*pageElementSize > len(p) {
		return fmt.Errorf("page %d: its %d elements do not fit in it", id, count)
	}
	for i := range count {
		at := pageHeaderSize + i*pageElementSize
		e := p[at : at+pageElementSize]
		// Positions count from the element.
		if flags == branchPage {
			pos, ksize := uint64(binary.NativeEndian.Uint32(e)), uint64(binary.NativeEndian.Uint32(e[4:]))
			if uint64(at)+pos+ksize > uint64(len(p)) {
				return fmt.Errorf("page %d: element %d lies outside it", id, i)
			}
			if err := w.page(binary.NativeEndian.Uint64(e[8:])); err != nil {
				return err
			}
			continue
		}
		eflags, pos := binary.NativeEndian.Uint32(e), uint64(binary.NativeEndian.Uint32(e[4:]))
		ksize, vsize := uint64(binary.NativeEndian.Uint32(e[8:])), uint64(binary.NativeEndian.Uint32(e[12:]))
		end := uint64(at) + pos + ksize + vsize
		if end > uint64(len(p)) {
			return fmt.Errorf("page %d: element %d lies outside it", id, i)
		}
		if eflags&bucketLeaf == 0 {
			continue
		}
		v := p[end-vsize : end]
		if len(v) < bucketHeader {
			return fmt.Errorf("page %d: element %d: a bucket of %d bytes", id, i, len(v))
		}
		if root := binary.NativeEndian.Uint64(v); root != 0 {
			if err := w.page(root); err != nil {
				return err
			}
		} else if err := w.walk(id, v[bucketHeader:]); err != nil {
			return err
		}
	}
	return nil
}
