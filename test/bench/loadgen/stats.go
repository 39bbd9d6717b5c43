package main

import (
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Summary of a set of samples in milliseconds, percentiles by nearest rank (as stats.ts).
type Summary struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

func summarize(ms []float64) Summary {
	if len(ms) == 0 {
		return Summary{}
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s))/100)) - 1
		return s[min(len(s)-1, max(0, i))]
	}
	return Summary{
		Count: len(s), P50: rank(50), P90: rank(90), P99: rank(99), P999: rank(99.9), Max: s[len(s)-1],
	}
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// CPU figures come from /proc, so that the extproc's CPU is its own (every thread) and is
// counted over exactly the measured window.

// USER_HZ, the unit of /proc's CPU times: 100 on every architecture Linux and Go share.
const clockTicks = 100.0

// processCPU is utime+stime of a process (all threads) in ms; -1 when unreadable.
func processCPU(pid string) float64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return -1
	}
	s := string(b)
	// The command name may contain spaces and ')': fields start after the last ')'.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return -1
	}
	u, err1 := strconv.ParseFloat(f[11], 64)
	k, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return (u + k) * 1000 / clockTicks
}

// processTree is pid and its descendants (by their parent in /proc/PID/stat), pid first: a
// server that forks workers (sluice extproc --workers N) is measured whole.
func processTree(pid string) []string {
	children := map[string][]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		// After the last ')': state, then the parent's pid.
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 1 {
			children[f[1]] = append(children[f[1]], e.Name())
		}
	}
	tree := []string{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree
}

// treeCPU is the CPU (ms) of the processes of `tree` in `all` (processesCPU); -1 when its first
// (the server itself) is not there.
func treeCPU(all map[string]float64, tree []string) float64 {
	first, ok := all[tree[0]]
	if !ok {
		return -1
	}
	total := first
	for _, pid := range tree[1:] {
		total += all[pid]
	}
	return total
}

// processesCPU is utime+stime (ms) of every process in /proc, by pid.
func processesCPU() map[string]float64 {
	out := map[string]float64{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if ms := processCPU(e.Name()); ms >= 0 {
			out[e.Name()] = ms
		}
	}
	return out
}

// othersMs is the CPU that processes other than `exclude` used between two snapshots. A process
// that started in between counts whole; one that exited in between is missed (it is gone).
func othersMs(before, after map[string]float64, exclude ...string) float64 {
	total := 0.0
	for pid, ms := range after {
		if slices.Contains(exclude, pid) {
			continue
		}
		total += ms - before[pid]
	}
	return total
}

// CoreTicks is one core's busy and total time from /proc/stat, in ms.
type CoreTicks struct {
	BusyMs  float64 `json:"busyMs"`
	TotalMs float64 `json:"totalMs"`
}

func coreTicks() map[string]CoreTicks {
	out := map[string]CoreTicks{}
	for name, c := range coreCounters() {
		var total, idle int64
		for i, v := range c {
			total += v
			if i == 3 || i == 4 { // idle, iowait
				idle += v
			}
		}
		out[strings.TrimPrefix(name, "cpu")] = CoreTicks{
			BusyMs:  float64(total-idle) * 1000 / clockTicks,
			TotalMs: float64(total) * 1000 / clockTicks,
		}
	}
	return out
}

// coreCounters reads /proc/stat's per-core lines (the first 8 counters of each), by name (cpu0).
func coreCounters() map[string][8]int64 {
	out := map[string][8]int64{}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		var c [8]int64
		for i := range c {
			c[i], _ = strconv.ParseInt(f[i+1], 10, 64)
		}
		out[f[0]] = c
	}
	return out
}
