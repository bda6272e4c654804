package watcher

import (
	"hash/maphash"
	"slices"
	"strings"
)

// tree is a persistent map from string keys to V, ordered by key: a treap.
// with and without return a new tree and copy only the nodes on the path to
// the key (O(log n) of them); the old and the new tree share every other
// node, so a snapshot costs its change, not its size, and any number of
// versions may be read while the next one is built.
//
// A node's priority is a hash of its key under a seed chosen per process:
// a set of keys has one shape whatever order the changes came in, and keys
// chosen by whoever writes to the registry cannot make it degenerate.
type tree[V any] struct {
	root *node[V]
	n    int
}

type node[V any] struct {
	key         string
	prio        uint64
	val         V
	left, right *node[V]
}

var prioritySeed = maphash.MakeSeed()

func priority(key string) uint64 { return maphash.String(prioritySeed, key) }

// entry is a key and its value, to build a tree from.
type entry[V any] struct {
	key string
	val V
}

// buildTree builds the tree of entries in O(n): sorted by key, the treap is
// the Cartesian tree of their priorities. Of entries with the same key the
// last wins.
func buildTree[V any](entries []entry[V]) tree[V] {
	slices.SortStableFunc(entries, func(a, b entry[V]) int { return strings.Compare(a.key, b.key) })
	var stack []*node[V] // the right spine of the tree so far
	n := 0
	for i, e := range entries {
		if i+1 < len(entries) && entries[i+1].key == e.key {
			continue
		}
		nd := &node[V]{key: e.key, prio: priority(e.key), val: e.val}
		var last *node[V]
		for len(stack) > 0 && stack[len(stack)-1].prio < nd.prio {
			last, stack = stack[len(stack)-1], stack[:len(stack)-1]
		}
		nd.left = last
		if len(stack) > 0 {
			stack[len(stack)-1].right = nd
		}
		stack = append(stack, nd)
		n++
	}
	if n == 0 {
		return tree[V]{}
	}
	return tree[V]{root: stack[0], n: n}
}

// len returns the number of keys.
func (t tree[V]) len() int { return t.n }

// get returns the value under key.
func (t tree[V]) get(key string) (V, bool) {
	for n := t.root; n != nil; {
		switch {
		case key < n.key:
			n = n.left
		case key > n.key:
			n = n.right
		default:
			return n.val, true
		}
	}
	var zero V
	return zero, false
}

// with returns the tree with key set to val.
func (t tree[V]) with(key string, val V) tree[V] {
	root, added := t.root.with(key, priority(key), val)
	if added {
		t.n++
	}
	return tree[V]{root: root, n: t.n}
}

func (n *node[V]) with(key string, prio uint64, val V) (*node[V], bool) {
	if n == nil {
		return &node[V]{key: key, prio: prio, val: val}, true
	}
	c := *n
	added := false
	switch {
	case key < n.key:
		c.left, added = n.left.with(key, prio, val)
		if c.left.prio > c.prio {
			// Rotate right; c.left is a fresh copy, so it may be changed.
			l := c.left
			c.left, l.right = l.right, &c
			return l, added
		}
	case key > n.key:
		c.right, added = n.right.with(key, prio, val)
		if c.right.prio > c.prio {
			r := c.right
			c.right, r.left = r.left, &c
			return r, added
		}
	default:
		c.val = val
	}
	return &c, added
}

// without returns the tree without key.
func (t tree[V]) without(key string) tree[V] {
	root, removed := t.root.without(key)
	if !removed {
		return t
	}
	return tree[V]{root: root, n: t.n - 1}
}

func (n *node[V]) without(key string) (*node[V], bool) {
	if n == nil {
		return nil, false
	}
	var removed bool
	c := *n
	switch {
	case key < n.key:
		c.left, removed = n.left.without(key)
	case key > n.key:
		c.right, removed = n.right.without(key)
	default:
		return join(n.left, n.right), true
	}
	if !removed {
		return n, false
	}
	return &c, true
}

// join joins two treaps whose keys are all of a's below all of b's.
func join[V any](a, b *node[V]) *node[V] {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.prio > b.prio:
		c := *a
		c.right = join(a.right, b)
		return &c
	default:
		c := *b
		c.left = join(a, b.left)
		return &c
	}
}

// values returns every value in key order.
func (t tree[V]) values() []V {
	out := make([]V, 0, t.n)
	t.root.ascend("", func(_ string, v V) bool { out = append(out, v); return true })
	return out
}

// withPrefix calls fn, in key order, for every key that begins with prefix.
func (t tree[V]) withPrefix(prefix string, fn func(key string, val V)) {
	t.root.ascend(prefix, func(k string, v V) bool {
		if !strings.HasPrefix(k, prefix) {
			return false
		}
		fn(k, v)
		return true
	})
}

// ascend calls fn for every key >= from, in order, until fn returns false;
// it returns false if fn did.
func (n *node[V]) ascend(from string, fn func(string, V) bool) bool {
	if n == nil {
		return true
	}
	if from <= n.key {
		if !n.left.ascend(from, fn) || !fn(n.key, n.val) {
			return false
		}
	}
	return n.right.ascend(from, fn)
}
