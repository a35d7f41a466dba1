package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// CPU accounting: each process's user+system CPU time, read from
// /proc/<pid>/stat before and after each round, is summed per side and
// divided by the side's correct answers. On a machine whose cores are
// shared, CPU per answer holds steadier than a rate: it does not depend on
// how much of the machine a program got, only on what it did.

// ticksPerSecond is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux architecture Go supports.
const ticksPerSecond = 100

// cpuTime is the user+system CPU pid has used.
func cpuTime(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	must(err)
	d, err := statCPU(data)
	must(err)
	return d
}

// statCPU reads utime and stime (fields 14 and 15) from the content of a
// /proc/<pid>/stat file. The command name (field 2, in parentheses) may
// hold spaces and parentheses itself, so the fields are counted from the
// last ')'.
func statCPU(stat []byte) (time.Duration, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("not a /proc stat line: %.60q", stat)
	}
	f := strings.Fields(string(stat[end+1:])) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat line with %d fields after the command: %.60q", len(f), stat)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("utime %q, stime %q: not tick counts", f[11], f[12])
	}
	return time.Duration(utime+stime) * time.Second / ticksPerSecond, nil
}

// perRequestMicros is d spread over n answers, in µs; 0 without answers.
func perRequestMicros(d time.Duration, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(d) / float64(time.Microsecond) / float64(n)
}

// proc is a program whose CPU the report divides among answers.
type proc struct {
	name string
	pid  int
}

// The processes, in this order (cpu slices of result follow it).
const (
	procVault = iota
	procCaddy
	procBench
)

// processes are set once Vault and Caddy run.
var processes []proc

// cpuPer is the CPU per correct answer of r of one process, in µs.
func (r result) cpuPer(p int) float64 {
	if p >= len(r.cpu) {
		return 0
	}
	return perRequestMicros(r.cpu[p], r.correct)
}
