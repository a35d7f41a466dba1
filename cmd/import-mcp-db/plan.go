package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/fernet/fernet-go"
)

// maxAttempts bounds the check-and-set retries for one user: each conflict
// means the record changed (a provisioning through the module) between the
// look and the write, and is decided again on the new record.
const maxAttempts = 3

type outcome int

const (
	imported outcome = iota
	skipped
	failed
)

// importer copies rows into a Target, one line of output per user.
type importer struct {
	target Target
	key    *fernet.Key
	dryRun bool
	out    io.Writer
}

// tally counts the users by outcome.
type tally [3]int

// run imports the rows in user id order and prints the summary line.
func (im *importer) run(ctx context.Context, rows []Row) tally {
	sortRows(rows)
	var t tally
	for _, r := range rows {
		if ctx.Err() != nil {
			break // interrupted: the users not reached are in no count
		}
		o, why := im.one(ctx, r)
		why = oneLine(why)
		t[o]++
		id := printableID(r)
		switch {
		case o == imported && im.dryRun:
			fmt.Fprintf(im.out, "would import %s\n", id)
		case o == imported:
			fmt.Fprintf(im.out, "imported %s\n", id)
		case o == skipped:
			fmt.Fprintf(im.out, "skipped %s: %s\n", id, why)
		default:
			fmt.Fprintf(im.out, "failed %s: %s\n", id, why)
		}
	}
	if im.dryRun {
		fmt.Fprintf(im.out, "dry run, nothing written: %d would import, %d skipped, %d failed\n", t[imported], t[skipped], t[failed])
	} else {
		fmt.Fprintf(im.out, "%d imported, %d skipped, %d failed\n", t[imported], t[skipped], t[failed])
	}
	return t
}

// one decides and, unless dry-running, writes one user. The row's
// updated_at decides against Vault's: an older or missing record is
// replaced (check-and-set, so nothing written meanwhile is lost), an equal
// or newer one is kept.
func (im *importer) one(ctx context.Context, r Row) (outcome, string) {
	rec, err := toRecord(r, im.key)
	if err != nil {
		return failed, err.Error()
	}
	for range maxAttempts {
		cur, err := im.target.Current(ctx, rec.UserID)
		if err != nil {
			return failed, fmt.Sprintf("reading Vault: %v", err)
		}
		switch {
		case cur.Found && cur.UpdatedAt > rec.UpdatedAt:
			return skipped, fmt.Sprintf("Vault has a newer record (updated_at %d > %d)", cur.UpdatedAt, rec.UpdatedAt)
		case cur.Found && cur.UpdatedAt == rec.UpdatedAt:
			return skipped, fmt.Sprintf("already up to date (updated_at %d)", rec.UpdatedAt)
		case im.dryRun:
			return imported, ""
		}
		err = im.target.Put(ctx, rec, cur)
		if err == nil {
			return imported, ""
		}
		if !errors.Is(err, ErrConflict) {
			return failed, fmt.Sprintf("writing to Vault: %v", err)
		}
	}
	return failed, "Vault's record kept changing during the import: run it again"
}

// oneLine folds a reason onto one line: one user, one line, also when the
// reason is Vault's error text, which spans lines (URL, code, a list of
// errors).
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
