package render

import (
	"fmt"
	"slices"
	"strings"
)

// unifiedDiff returns a unified diff (three lines of context) from a to b,
// for --dry. Past maxEdits line edits it shows b whole instead.
func unifiedDiff(a, b string) string {
	x, y := splitLines(a), splitLines(b)
	ops, ok := lineEdits(x, y, maxEdits)
	if !ok {
		var sb strings.Builder
		fmt.Fprintf(&sb, "@@ -1,%d +1,%d @@ (rewritten)\n", len(x), len(y))
		for _, l := range y {
			sb.WriteString("+" + l)
		}
		return sb.String()
	}
	return formatHunks(ops, 3)
}

// maxEdits bounds a --dry diff: lineEdits keeps its V array for each edit,
// so its memory grows with the square of the edits (about 16 MB at 1000;
// 256 MB at 4000, which one account renaming its services could cost
// every dry pass), and a diff of more lines than that is read as a
// rewrite anyway.
const maxEdits = 1000

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	} else {
		lines[len(lines)-1] += "\n\\ No newline at end of file\n"
	}
	return lines
}

// edit is one line of a diff: ' ' kept, '-' removed, '+' added.
type edit struct {
	op   byte
	line string
	ai   int // line number in a (for ' ' and '-'), 0-based
	bi   int // line number in b (for ' ' and '+')
}

// lineEdits is Myers' O((N+M)D) diff. It gives up (ok false) after
// limit edits.
func lineEdits(a, b []string, limit int) ([]edit, bool) {
	n, m := len(a), len(b)
	maxD := min(n+m, limit)
	off := maxD + 1
	v := make([]int, 2*maxD+3)
	var trace [][]int
	for d := 0; d <= maxD; d++ {
		trace = append(trace, append([]int(nil), v...))
		for k := -d; k <= d; k += 2 {
			var xx int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				xx = v[off+k+1]
			} else {
				xx = v[off+k-1] + 1
			}
			yy := xx - k
			for xx < n && yy < m && a[xx] == b[yy] {
				xx++
				yy++
			}
			v[off+k] = xx
			if xx >= n && yy >= m {
				return backtrack(a, b, trace, off), true
			}
		}
	}
	return nil, false
}

// backtrack walks the trace of lineEdits back from the end; trace[d] is
// the V array at the start of step d.
func backtrack(a, b []string, trace [][]int, off int) []edit {
	x, y := len(a), len(b)
	var rev []edit
	for d := len(trace) - 1; d > 0; d-- {
		v := trace[d]
		k := x - y
		pk := k - 1
		if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
			pk = k + 1
		}
		px := v[off+pk]
		py := px - pk
		mx, my := px+1, py // where the move ends: right (a line removed)...
		if pk == k+1 {
			mx, my = px, py+1 // ...or down (a line added)
		}
		for x > mx && y > my {
			x, y = x-1, y-1
			rev = append(rev, edit{' ', a[x], x, y})
		}
		if pk == k+1 {
			y--
			rev = append(rev, edit{'+', b[y], x, y})
		} else {
			x--
			rev = append(rev, edit{'-', a[x], x, y})
		}
	}
	for x > 0 && y > 0 {
		x, y = x-1, y-1
		rev = append(rev, edit{' ', a[x], x, y})
	}
	slices.Reverse(rev)
	return rev
}

// formatHunks prints the edits as unified hunks with ctx lines of context.
func formatHunks(ops []edit, ctx int) string {
	var sb strings.Builder
	for i := 0; i < len(ops); {
		if ops[i].op == ' ' {
			i++
			continue
		}
		start := max(0, i-ctx)
		end := i
		for end < len(ops) {
			if ops[end].op != ' ' {
				end++
				continue
			}
			run := end
			for run < len(ops) && ops[run].op == ' ' {
				run++
			}
			if run == len(ops) || run-end > 2*ctx {
				end = min(end+ctx, len(ops))
				break
			}
			end = run
		}
		var aStart, bStart, aLen, bLen int
		aStart, bStart = -1, -1
		for _, e := range ops[start:end] {
			if e.op != '+' {
				if aStart < 0 {
					aStart = e.ai
				}
				aLen++
			}
			if e.op != '-' {
				if bStart < 0 {
					bStart = e.bi
				}
				bLen++
			}
		}
		fmt.Fprintf(&sb, "@@ -%s +%s @@\n", hunkRange(aStart, aLen, ops[start].ai), hunkRange(bStart, bLen, ops[start].bi))
		for _, e := range ops[start:end] {
			sb.WriteByte(e.op)
			sb.WriteString(e.line)
		}
		i = end
	}
	return sb.String()
}

func hunkRange(start, n, fallback int) string {
	if n == 0 {
		return fmt.Sprintf("%d,0", fallback)
	}
	return fmt.Sprintf("%d,%d", start+1, n)
}
