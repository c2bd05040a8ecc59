package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

var dpopLine = regexp.MustCompile(`^BenchmarkDPoPProofs/(fetch|proof)-\d+\s+\d+\s+[\d.]+ ns/op\s+([\d.]+) (?:fetches|proofs)/s`)

// benchDPoP is benchmark 5: DPoP proofs per second (POST
// /v1/tokens/{name}/dpop, an ES256 signature each) against plain fetches
// per second of the same grant in the same run, from the daemon's
// BenchmarkDPoPProofs (the API handler in process, all cores).
func benchDPoP(rep *report, goCmd string) error {
	args := []string{"test", "-run", "^$", "-bench", "^BenchmarkDPoPProofs$", "-benchtime", "3s", "-count", "1", "./daemon/"}
	cmd := exec.Command(goCmd, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	line := goCmd + " " + strings.Join(args, " ")
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("bench: %s: %w\n%s", line, err, out.String())
	}
	rates := map[string]float64{}
	for _, l := range strings.Split(out.String(), "\n") {
		if m := dpopLine.FindStringSubmatch(l); m != nil {
			rates[m[1]], _ = strconv.ParseFloat(m[2], 64)
		}
	}
	fetches, proofs := rates["fetch"], rates["proof"]
	if fetches == 0 || proofs == 0 {
		return fmt.Errorf("bench: no BenchmarkDPoPProofs results in:\n%s", out.String())
	}
	const sec = "DPoP proofs"
	rep.add(row{sec, "proofs/s (POST …/dpop)", fmtRate(proofs), fmtRate(fetches) + " fetches/s", fmtRatio(proofs / fetches), "", nil})
	rep.notef("DPoP proofs: `%s`; each proof is a fresh ES256 signature (htm, htu, iat, jti, ath); the baseline is GET /v1/tokens/{name} of the same grant through the same handler in the same run.", line)
	return nil
}
