package main

import (
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
)

// A server with workers is measured whole: its children are in its tree, and their CPU in the
// tree's.
func TestProcessTreeHoldsChildren(t *testing.T) {
	child := exec.Command("sleep", "5")
	if err := child.Start(); err != nil {
		t.Skipf("no sleep command: %v", err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	self := strconv.Itoa(os.Getpid())
	tree := processTree(self)
	if tree[0] != self {
		t.Fatalf("tree starts with %s, want the process itself %s", tree[0], self)
	}
	if !slices.Contains(tree, strconv.Itoa(child.Process.Pid)) {
		t.Fatalf("tree %v lacks the child %d", tree, child.Process.Pid)
	}
	if slices.Contains(tree, strconv.Itoa(os.Getppid())) {
		t.Fatalf("tree %v holds the parent", tree)
	}
}

func TestTreeCPUSumsTheTree(t *testing.T) {
	all := map[string]float64{"10": 100, "11": 30, "12": 5, "99": 1000}
	if got := treeCPU(all, []string{"10", "11", "12"}); got != 135 {
		t.Fatalf("treeCPU = %v, want 135", got)
	}
	// A child gone by the snapshot counts nothing; the server gone makes the figure unknown.
	if got := treeCPU(all, []string{"10", "13"}); got != 100 {
		t.Fatalf("treeCPU = %v, want 100", got)
	}
	if got := treeCPU(all, []string{"13", "10"}); got != -1 {
		t.Fatalf("treeCPU = %v, want -1", got)
	}
}
