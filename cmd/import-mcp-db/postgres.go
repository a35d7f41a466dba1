package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// postgresSource reads the MCP server's PostgreSQL database in a read-only
// transaction.
type postgresSource struct{ conn *pgx.Conn }

func openPostgres(ctx context.Context, connURL string) (*postgresSource, error) {
	cfg, err := pgx.ParseConfig(connURL)
	if err != nil {
		// pgx redacts the password only as well as it can parse the
		// URL; an unparsable one is not quoted at all.
		return nil, errors.New("cannot parse the PostgreSQL URL (not shown: it may hold a password); check host:port and percent-encode the password's special characters")
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err // names host, user and database, never the password
	}
	return &postgresSource{conn: conn}, nil
}

func (s *postgresSource) rows(ctx context.Context) ([]Row, error) {
	tx, err := s.conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only: nothing to keep or lose
	rs, err := tx.Query(ctx, selectRows)
	if err != nil {
		return nil, fmt.Errorf("reading app_passwords: %w", err)
	}
	out, err := pgx.CollectRows(rs, func(row pgx.CollectableRow) (Row, error) {
		var r Row
		err := row.Scan(&r.UserID, &r.Token, &r.CreatedAt, &r.UpdatedAt, &r.Scopes, &r.Username)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading app_passwords: %w", err)
	}
	return out, nil
}

func (s *postgresSource) Close() error { return s.conn.Close(context.Background()) }
