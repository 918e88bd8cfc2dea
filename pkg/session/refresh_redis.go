package session

import (
	"context"
	"errors"
)

var errRefreshRedisPending = errors.New("redis: refresh families not implemented yet")

// CreateFamily implements Store.
func (r *RedisStore) CreateFamily(context.Context, *Session, Limit, RefreshPolicy) (Refreshed, []string, error) {
	return Refreshed{}, nil, errRefreshRedisPending
}

// Refresh implements Store.
func (r *RedisStore) Refresh(context.Context, string) (Refreshed, error) {
	return Refreshed{}, errRefreshRedisPending
}

// RevokeFamily implements Store.
func (r *RedisStore) RevokeFamily(context.Context, string) error { return errRefreshRedisPending }
