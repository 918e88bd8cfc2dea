package session

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Service keys, next to the session keys and under the same rules (see the
// key layout in redis.go): one key per step, no hash tags, ordered so that
// stopping between two steps never leaves a credential the service record
// does not list.
//
//	sg:c:<credential ref>  string  the credential record Check reads; no TTL (a service is registered, not logged in)
//	sg:svc:<name>          string  the service record, listing its credentials by ref
//	sg:svcs                zset    every service name (score 0: read in name order)
//
// A credential key is written only after the service record lists it, and
// deleted before the record forgets it. DeleteService first marks the record
// as being deleted (the record behind deletingMark), which no AddCredential
// can list a credential in, then deletes every credential key the marked
// record lists, then the record. An AddCredential that listed its credential
// before the mark may write its key after the delete went past it, so it
// re-reads the record after writing: unless a live record still lists the
// credential, it deletes the key again. If a live record lists it at that
// moment, the mark came later and the delete will reach the key.
//
// A marked record is a service that no longer exists to every reader; a
// delete that stopped halfway is finished by the next DeleteService or
// CreateService of that name.
const (
	credentialPrefix = "sg:c:"
	servicePrefix    = "sg:svc:"
	servicesIndex    = "sg:svcs"
)

// deletingMark prefixes a service record whose delete has begun.
const deletingMark = "deleting:"

func credentialKey(ref string) string { return credentialPrefix + ref }
func serviceKey(name string) string   { return servicePrefix + name }

// casDelScript deletes a record only if it is unchanged since it was read.
var casDelScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`)

// casAttempts bounds the retries of a compare-and-swap on a service record.
const casAttempts = 5

// CreateService implements ServiceStore.
func (r *RedisStore) CreateService(ctx context.Context, s *Service, credRef string) error {
	if err := checkNewService(s, credRef); err != nil {
		return err
	}
	raw, err := encodeService(withCredential(s, credRef, s.CreatedAt))
	if err != nil {
		return err
	}
	cred, err := encodeCredential(s, s.CreatedAt)
	if err != nil {
		return err
	}
	sk := serviceKey(s.Name)
	ok, err := r.rdb.SetNX(ctx, sk, raw, 0).Result()
	if err != nil {
		return wrap("create service", err)
	}
	if !ok {
		// A retried SET NX finds the record its first attempt wrote; a
		// delete that stopped halfway is finished first; anything else is
		// another service of that name.
		cur, err := r.rdb.Get(ctx, sk).Result()
		if err == nil && strings.HasPrefix(cur, deletingMark) {
			if _, err := r.finishDelete(ctx, s.Name, cur); err != nil && !isNotFound(err) {
				return err
			}
			if ok, err = r.rdb.SetNX(ctx, sk, raw, 0).Result(); err != nil {
				return wrap("create service", err)
			}
			if !ok {
				return ErrServiceExists
			}
		} else if err != nil || cur != raw {
			return ErrServiceExists
		}
	}
	if r.hooks.credentialListed != nil {
		r.hooks.credentialListed()
	}
	if err := r.rdb.Set(ctx, credentialKey(credRef), cred, 0).Err(); err != nil {
		r.undoService(ctx, s.Name, raw, "")
		return wrap("create credential", err)
	}
	if err := r.keepIfListed(ctx, s.Name, credRef); err != nil {
		r.undoService(ctx, s.Name, raw, "")
		if isNotFound(err) {
			return fmt.Errorf("create service %s: deleted while being created", s.Name)
		}
		return err
	}
	if err := r.rdb.ZAdd(ctx, servicesIndex, redis.Z{Member: s.Name}).Err(); err != nil {
		// Unlisted, the service could still be deleted by name; but the
		// caller is told it failed, so nothing of it may stay.
		r.undoService(ctx, s.Name, raw, credRef)
		return wrap("index service", err)
	}
	return nil
}

// undoService removes what a failed CreateService wrote; best effort, the
// credential first.
func (r *RedisStore) undoService(ctx context.Context, name, raw, credRef string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	if credRef != "" {
		if err := r.rdb.Del(ctx, credentialKey(credRef)).Err(); err != nil {
			return // keep the record: it is what lets a delete find the credential
		}
	}
	_ = r.run(ctx, casDelScript, []string{serviceKey(name)}, raw).Err()
}

// readService returns a live service record and its raw form; a record
// being deleted is ErrNotFound.
func (r *RedisStore) readService(ctx context.Context, name string) (*Service, string, error) {
	raw, err := r.rdb.Get(ctx, serviceKey(name)).Result()
	if isNil(err) || (err == nil && strings.HasPrefix(raw, deletingMark)) {
		return nil, "", ErrNotFound
	}
	if err != nil {
		return nil, "", wrap("read service", err)
	}
	s, err := decodeService(raw)
	if err != nil {
		return nil, "", fmt.Errorf("service %s: %w", name, err)
	}
	return s, raw, nil
}

// swapService replaces a service record by compare-and-swap, re-reading and
// re-applying change on contention. change returns the next record, or an
// error that ends the attempt.
func (r *RedisStore) swapService(ctx context.Context, name string, change func(*Service) (*Service, error)) error {
	for range casAttempts {
		s, raw, err := r.readService(ctx, name)
		if err != nil {
			return err
		}
		next, err := change(s)
		if err != nil {
			return err
		}
		enc, err := encodeService(next)
		if err != nil {
			return err
		}
		swapped, err := r.run(ctx, casScript, []string{serviceKey(name)}, raw, enc).Int()
		if err != nil {
			return wrap("update service", err)
		}
		if swapped == 1 {
			return nil
		}
	}
	return fmt.Errorf("update service %s: still contended after %d attempts", name, casAttempts)
}

// AddCredential implements ServiceStore.
func (r *RedisStore) AddCredential(ctx context.Context, name, credRef string) error {
	if !ValidRef(credRef) {
		return ErrNotFound
	}
	now := r.now()
	var roles *Service
	err := r.swapService(ctx, name, func(s *Service) (*Service, error) {
		if len(s.Credentials) >= maxCredentials {
			return nil, ErrTooManyCredentials
		}
		roles = s
		return withCredential(s, credRef, now), nil
	})
	if err != nil {
		return err
	}
	if r.hooks.credentialListed != nil {
		r.hooks.credentialListed()
	}
	cred, err := encodeCredential(roles, now)
	if err != nil {
		return err
	}
	ck := credentialKey(credRef)
	if err := r.rdb.Set(ctx, ck, cred, 0).Err(); err != nil {
		return wrap("create credential", err)
	}
	return r.keepIfListed(ctx, name, credRef)
}

// keepIfListed runs after a credential key is written: a DeleteService that
// marked the record after the credential was listed may have deleted the
// keys it lists before this one existed. Unless a live record lists the
// credential now, the key goes again and the write fails (ErrNotFound, or
// the read's error).
func (r *RedisStore) keepIfListed(ctx context.Context, name, credRef string) error {
	s, _, err := r.readService(ctx, name)
	if err == nil {
		for _, c := range s.Credentials {
			if c.Ref == credRef {
				return nil
			}
		}
	}
	if derr := r.rdb.Del(ctx, credentialKey(credRef)).Err(); derr != nil {
		return wrap("undo credential", derr)
	}
	if err != nil && !isNotFound(err) {
		return err
	}
	return ErrNotFound
}

// RevokeCredential implements ServiceStore: the credential key goes first,
// so the credential fails from that moment; the record forgets it after,
// and then the key is deleted once more. An AddCredential of this
// credential that listed it before the revoke read the record may write the
// key after the first delete, and its re-read (keepIfListed) may still find
// it listed if it comes before the record forgets it: the second delete is
// what removes that key. A key written later finds it unlisted and goes.
func (r *RedisStore) RevokeCredential(ctx context.Context, name, credRef string) error {
	s, _, err := r.readService(ctx, name)
	if err != nil {
		return err
	}
	if _, found := withoutCredential(s, credRef); !found {
		return ErrNotFound
	}
	if err := r.rdb.Del(ctx, credentialKey(credRef)).Err(); err != nil {
		return wrap("delete credential", err)
	}
	if r.hooks.credentialKeyDeleted != nil {
		r.hooks.credentialKeyDeleted()
	}
	err = r.swapService(ctx, name, func(s *Service) (*Service, error) {
		next, _ := withoutCredential(s, credRef)
		return next, nil
	})
	if err != nil && !isNotFound(err) {
		return err
	}
	// Not found: deleted meanwhile, and the credential goes either way.
	if err := r.rdb.Del(ctx, credentialKey(credRef)).Err(); err != nil {
		return wrap("delete credential", err)
	}
	return nil
}

// DeleteService implements ServiceStore: mark the record, then finish.
func (r *RedisStore) DeleteService(ctx context.Context, name string) (int, error) {
	sk := serviceKey(name)
	for range casAttempts {
		raw, err := r.rdb.Get(ctx, sk).Result()
		if isNil(err) {
			return 0, ErrNotFound
		}
		if err != nil {
			return 0, wrap("read service", err)
		}
		if !strings.HasPrefix(raw, deletingMark) {
			marked := deletingMark + raw
			swapped, err := r.run(ctx, casScript, []string{sk}, raw, marked).Int()
			if err != nil {
				return 0, wrap("mark service deleted", err)
			}
			if swapped == 0 {
				continue // a credential was added meanwhile: read it too
			}
			raw = marked
		}
		return r.finishDelete(ctx, name, raw)
	}
	return 0, fmt.Errorf("delete service %s: still contended after %d attempts", name, casAttempts)
}

// finishDelete deletes every credential a marked record lists, then the
// record and its index entry, and returns how many credentials it listed.
// ErrNotFound if another delete finished first.
func (r *RedisStore) finishDelete(ctx context.Context, name, marked string) (int, error) {
	s, err := decodeService(strings.TrimPrefix(marked, deletingMark))
	if err != nil {
		return 0, fmt.Errorf("service %s: %w", name, err)
	}
	if len(s.Credentials) > 0 {
		pipe := r.rdb.Pipeline()
		for _, c := range s.Credentials {
			pipe.Del(ctx, credentialKey(c.Ref))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, wrap("delete credentials", err)
		}
	}
	if r.hooks.credentialsDeleted != nil {
		r.hooks.credentialsDeleted()
	}
	deleted, err := r.run(ctx, casDelScript, []string{serviceKey(name)}, marked).Int()
	if err != nil {
		return 0, wrap("delete service", err)
	}
	if r.hooks.recordDeleted != nil {
		r.hooks.recordDeleted()
	}
	if err := r.rdb.ZRem(ctx, servicesIndex, name).Err(); err != nil {
		return 0, wrap("unindex service", err)
	}
	// A CreateService of the same name may have indexed its new record
	// before the line above took the name out: put it back, or a live
	// service would be missing from every listing.
	if cur, err := r.rdb.Get(ctx, serviceKey(name)).Result(); err == nil && !strings.HasPrefix(cur, deletingMark) {
		if err := r.rdb.ZAdd(ctx, servicesIndex, redis.Z{Member: name}).Err(); err != nil {
			return 0, wrap("reindex service", err)
		}
	}
	if deleted == 0 {
		return 0, ErrNotFound
	}
	return len(s.Credentials), nil
}

// GetService implements ServiceStore.
func (r *RedisStore) GetService(ctx context.Context, name string) (*Service, error) {
	s, _, err := r.readService(ctx, name)
	return s, err
}

// ListServices implements ServiceStore. Index entries whose record is gone
// (a delete that stopped before unindexing) are pruned.
func (r *RedisStore) ListServices(ctx context.Context) ([]*Service, error) {
	names, err := r.rdb.ZRange(ctx, servicesIndex, 0, -1).Result()
	if err != nil {
		return nil, wrap("read service index", err)
	}
	out := []*Service{}
	if len(names) == 0 {
		return out, nil
	}
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.Get(ctx, serviceKey(n))
	}
	if _, err := pipe.Exec(ctx); err != nil && !isNil(err) {
		return nil, wrap("read services", err)
	}
	var dead []any
	for i, n := range names {
		raw, err := cmds[i].Result()
		if isNil(err) {
			dead = append(dead, n)
			continue
		}
		if err != nil {
			return nil, wrap("read service", err)
		}
		if strings.HasPrefix(raw, deletingMark) {
			continue // gone to readers; its delete unindexes it
		}
		s, err := decodeService(raw)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", n, err)
		}
		out = append(out, s)
	}
	if len(dead) > 0 {
		if err := r.rdb.ZRem(ctx, servicesIndex, dead...).Err(); err != nil {
			return nil, wrap("prune service index", err)
		}
	}
	return out, nil
}

// ResolveCredential implements ServiceStore: one GET, the Check path's
// single round trip for a service.
func (r *RedisStore) ResolveCredential(ctx context.Context, ref string) (ServiceEntry, error) {
	raw, err := r.rdb.Get(ctx, credentialKey(ref)).Result()
	if err != nil {
		if isNil(err) {
			return ServiceEntry{}, ErrNotFound
		}
		return ServiceEntry{}, wrap("resolve credential", err)
	}
	return parseServiceEntry(ref, raw)
}

// ResolveServiceName implements ServiceStore: one GET of the service record.
func (r *RedisStore) ResolveServiceName(ctx context.Context, name string) (ServiceEntry, error) {
	raw, err := r.rdb.Get(ctx, serviceKey(name)).Result()
	if err != nil {
		if isNil(err) {
			return ServiceEntry{}, ErrNotFound
		}
		return ServiceEntry{}, wrap("resolve service", err)
	}
	if strings.HasPrefix(raw, deletingMark) {
		return ServiceEntry{}, ErrNotFound
	}
	return serviceEntryOf(name, raw)
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
