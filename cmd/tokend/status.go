package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/oauth"
)

// cmdStatus lists the grants the caller may see, or shows one grant in
// detail with its refresh history.
func (c *cli) cmdStatus(ctx context.Context, args []string) int {
	fs := c.flagSet("status", "status [NAME] [--socket PATH] [--json] [--timeout DURATION]")
	cf := c.addClientFlags(fs)
	asJSON := fs.Bool("json", false, "print the JSON answer")
	pos, code, ok := c.parseArgs(fs, args)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		return c.usageErr(fs, "status: unexpected argument %q", pos[1])
	}
	cl, ctx, cancel := c.client(ctx, cf)
	defer cancel()
	now := c.now()
	if len(pos) == 0 {
		list, err := cl.List(ctx)
		if err != nil {
			return c.fail(err)
		}
		if *asJSON {
			return c.printJSON(list)
		}
		if len(list.Grants) == 0 {
			fmt.Fprintln(c.stdout, "no grants (none configured, or none you may read)")
			return exitOK
		}
		writeTable(c.stdout, list.Grants, now)
		return exitOK
	}
	st, err := cl.Status(ctx, pos[0])
	if err != nil {
		return c.fail(err)
	}
	if *asJSON {
		return c.printJSON(st)
	}
	writeDetails(c.stdout, st, now)
	return exitOK
}

// writeTable writes one line per grant.
func writeTable(w io.Writer, grants []api.GrantStatus, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GRANT\tTYPE\tSTATE\tEXPIRES-IN\tLAST-REFRESH\tLAST-ERROR")
	for _, g := range grants {
		lastErr := g.LastError
		for _, s := range g.Sinks {
			if lastErr == "" && !s.OK && s.Error != "" {
				lastErr = "sink " + s.Path + ": " + s.Error
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", text(g.Name), orDash(text(g.Type)), orDash(text(g.State)),
			expiresIn(g.ExpiresAt, now), ago(g.LastSuccess, now), orDash(oneLine(lastErr, 80)))
	}
	tw.Flush()
}

// writeDetails writes one grant's status and history.
func writeDetails(w io.Writer, g *api.GrantStatus, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("grant", text(g.Name))
	row("type", orDash(text(g.Type)))
	row("provider", orDash(text(g.Provider)))
	if g.TokenEndpoint != "" {
		row("token endpoint", text(g.TokenEndpoint))
	}
	if g.SubjectGrant != "" {
		row("subject grant", text(g.SubjectGrant))
	}
	if g.ProtectedResource != "" {
		row("protected resource", text(g.ProtectedResource))
	}
	if len(g.StepUpScopes) > 0 {
		row("step-up scopes", text(strings.Join(g.StepUpScopes, " "))+" (the next tokend authorize "+text(g.Name)+" asks for them too)")
		if g.StepUpReason != "" {
			row("step-up reason", text(g.StepUpReason))
		}
	}
	if g.DPoP {
		row("dpop", "yes (sender-constrained: proofs from tokend token "+text(g.Name)+" --dpop METHOD URL)")
	}
	state := orDash(text(g.State))
	if !g.StateSince.IsZero() {
		state += " (since " + stamp(g.StateSince, now) + ")"
	}
	row("state", state)
	if r := refresherLine(g); r != "" {
		row("refreshed by", r)
	}
	if g.FleetConflict != "" {
		row("fleet conflict", oneLine(g.FleetConflict, 0)+" (not refreshed by this instance)")
	}
	if g.Scope != "" {
		row("scope", text(g.Scope))
	}
	if g.ExpiresAt.IsZero() {
		row("expires", "-")
	} else {
		row("expires", g.ExpiresAt.Format(time.RFC3339)+" ("+expiresIn(g.ExpiresAt, now)+")")
	}
	refresh := "none"
	if g.HasRefreshToken {
		refresh = "yes"
		if !g.RefreshExpires.IsZero() {
			refresh += ", expires " + g.RefreshExpires.Format(time.RFC3339) + " (" + expiresIn(g.RefreshExpires, now) + ")"
		}
	}
	row("refresh token", refresh)
	row("obtained", stamp(g.Obtained, now))
	if !g.NextRefresh.IsZero() {
		next := g.NextRefresh.Format(time.RFC3339)
		if d := g.NextRefresh.Sub(now); d > 0 {
			next += " (in " + human(d) + ")"
		} else {
			next += " (due)"
		}
		row("next refresh", next)
	}
	row("last success", stamp(g.LastSuccess, now))
	row("last attempt", stamp(g.LastAttempt, now))
	if g.LastError != "" {
		e := oneLine(g.LastError, 0)
		if g.LastErrorCode != "" {
			e += " (" + text(g.LastErrorCode) + ")"
		}
		row("last error", e)
	}
	if g.Failures > 0 {
		row("failures", fmt.Sprintf("%d in a row", g.Failures))
	}
	row("generation", fmt.Sprint(g.Generation))
	if g.Auth != "" {
		row("authorization", text(g.Auth)+" ("+stamp(g.AuthAt, now)+")")
	}
	for _, s := range g.Sinks {
		row("sink", sinkLine(s, now))
	}
	tw.Flush()

	if len(g.History) == 0 {
		return
	}
	fmt.Fprintln(w, "\nhistory, newest first:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tRESULT\tLATENCY\tREASON\tERROR")
	for _, a := range g.History {
		lat := (time.Duration(a.LatencyMS) * time.Millisecond).String()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.At.Format(time.RFC3339), orDash(text(a.Result)), lat, orDash(text(a.Reason)), orDash(oneLine(a.Error, 100)))
	}
	tw.Flush()
}

// sinkLine describes one file sink: written when, or its error; and how
// its command last ran.
func sinkLine(s api.SinkStatus, now time.Time) string {
	line := text(s.Path) + ": "
	switch {
	case !s.OK && s.Error != "":
		line += "FAILING: " + oneLine(s.Error, 0)
	case s.WrittenAt.IsZero():
		line += "no file (no token)"
	default:
		line += "written " + stamp(s.WrittenAt, now)
	}
	if s.CommandExit != nil {
		line += fmt.Sprintf("; command exit %d", *s.CommandExit)
		if s.CommandError != "" {
			line += " (" + oneLine(s.CommandError, 100) + ")"
		}
		if s.CommandStderrTail != "" {
			line += ", stderr: " + oneLine(s.CommandStderrTail, 200)
		}
	}
	return line
}

// expiresIn says how long until t: "12m3s", or "expired 3m ago".
func expiresIn(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if d := t.Sub(now); d > 0 {
		return human(d)
	}
	return "expired " + human(now.Sub(t)) + " ago"
}

// ago says how long ago t was: "5m ago", "-" when never.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < 0 {
		return "in " + human(-d)
	}
	return human(d) + " ago"
}

// stamp is an RFC 3339 time with how long ago it was.
func stamp(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339) + " (" + ago(t, now) + ")"
}

// human formats a duration with two units at most: "45s", "12m3s", "3h5m",
// "2d4h". Precision beyond that is noise in a status table.
func human(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		m, s := int(d/time.Minute), int(d%time.Minute/time.Second)
		if s == 0 {
			return fmt.Sprintf("%dm", m)
		}
		return fmt.Sprintf("%dm%ds", m, s)
	case d < 24*time.Hour:
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%dm", h, m)
	default:
		days, h := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
		if h == 0 {
			return fmt.Sprintf("%dd", days)
		}
		return fmt.Sprintf("%dd%dh", days, h)
	}
}

// text makes a string from the daemon fit to print on a terminal: runs
// of white space (CR, LF and tab included) become one space, and C0 and C1
// controls (ESC starts escape sequences: screen clearing, OSC 8 links,
// title changes), bidi overrides and invalid UTF-8 are left out. Scopes,
// errors and states come from the provider through the daemon; the daemon
// cleans them too, but the terminal is the user's, and a daemon of another
// version (or a socket that is not tokend's) may not have.
func text(s string) string {
	s = oauth.Printable(strings.Join(strings.Fields(s), " "))
	return strings.Join(strings.Fields(s), " ") // what was around a control
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine flattens s to one line, cut to max runes (0: no limit), so one
// long provider message does not break the table. Like text, it leaves
// out what a terminal would act on.
func oneLine(s string, max int) string {
	s = text(s)
	if r := []rune(s); max > 0 && len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}

// stateLine summarises a grant after an action: "g: valid, expires in 59m".
func stateLine(g *api.GrantStatus, now time.Time) string {
	s := text(g.Name) + ": " + orDash(text(g.State))
	switch {
	case g.ExpiresAt.IsZero():
	case g.ExpiresAt.After(now):
		s += ", expires in " + human(g.ExpiresAt.Sub(now))
	default:
		s += ", token expired " + human(now.Sub(g.ExpiresAt)) + " ago"
	}
	if g.LastError != "" && g.State != api.StateValid {
		s += "; last error: " + oneLine(g.LastError, 0)
	}
	return s
}

// refresherLine says which fleet instance refreshes g; "" outside fleet
// mode (the daemon sends no refresher and no conflict there).
func refresherLine(g *api.GrantStatus) string {
	switch {
	case g.RefresherSelf:
		return text(g.Refresher) + " (this instance)"
	case g.Refresher != "":
		return text(g.Refresher)
	case g.FleetConflict != "":
		return "-"
	}
	return ""
}
