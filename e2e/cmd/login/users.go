package main

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// User is one entry of the fixture file. Everything but the password hash is
// copied into the session sessiongate creates.
type User struct {
	Username     string            `json:"username"`
	PasswordHash string            `json:"password_hash"`
	Subject      string            `json:"subject"`
	Tenant       string            `json:"tenant"`
	Roles        []string          `json:"roles"`
	Claims       map[string]string `json:"claims"`
}

type usersFile struct {
	Users []User `json:"users"`
}

// LoadUsers reads the fixture strictly (unknown fields are errors) so that a
// misspelt "roles" does not silently create role-less sessions.
func LoadUsers(path string) (map[string]User, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f usersFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	users := make(map[string]User, len(f.Users))
	for i, u := range f.Users {
		switch {
		case u.Username == "" || u.Subject == "":
			return nil, fmt.Errorf("%s: user %d: username and subject are required", path, i)
		case users[u.Username].Username != "":
			return nil, fmt.Errorf("%s: duplicate username %q", path, u.Username)
		}
		if _, _, _, err := parseHash(u.PasswordHash); err != nil {
			return nil, fmt.Errorf("%s: user %q: %w", path, u.Username, err)
		}
		users[u.Username] = u
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("%s: no users", path)
	}
	return users, nil
}

// Hashes are "pbkdf2-sha256$<iterations>$<salt>$<key>" (base64url, no
// padding): standard library only, and cheap enough at this iteration count
// for tests that log in hundreds of times. A production login service would
// not keep passwords at all; it would delegate to an identity provider.
const (
	hashScheme     = "pbkdf2-sha256"
	hashIterations = 20000
	hashKeyLen     = 32
)

// HashPassword returns a fixture hash for pw with a fresh random salt.
func HashPassword(pw string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key, err := pbkdf2.Key(sha256.New, pw, salt, hashIterations, hashKeyLen)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	return strings.Join([]string{hashScheme, strconv.Itoa(hashIterations), enc.EncodeToString(salt), enc.EncodeToString(key)}, "$"), nil
}

func parseHash(h string) (iter int, salt, key []byte, err error) {
	parts := strings.Split(h, "$")
	if len(parts) != 4 || parts[0] != hashScheme {
		return 0, nil, nil, errors.New(`password_hash: want "pbkdf2-sha256$<iterations>$<salt>$<key>" (make one with login -hash-password)`)
	}
	iter, err = strconv.Atoi(parts[1])
	if err != nil || iter < 1000 || iter > 10_000_000 {
		return 0, nil, nil, errors.New("password_hash: bad iteration count")
	}
	enc := base64.RawURLEncoding
	if salt, err = enc.DecodeString(parts[2]); err != nil || len(salt) < 8 {
		return 0, nil, nil, errors.New("password_hash: bad salt")
	}
	if key, err = enc.DecodeString(parts[3]); err != nil || len(key) < 16 {
		return 0, nil, nil, errors.New("password_hash: bad key")
	}
	return iter, salt, key, nil
}

// dummyHash is checked against when the username is unknown, so that a
// missing user costs the same time as a wrong password.
var dummyHash = func() string {
	h, err := HashPassword("not a real password")
	if err != nil {
		panic(err)
	}
	return h
}()

// CheckPassword reports whether pw matches the stored hash, in constant time
// with respect to the key comparison.
func CheckPassword(stored, pw string) bool {
	iter, salt, key, err := parseHash(stored)
	if err != nil {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, pw, salt, iter, len(key))
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(got, key) == 1
}

// Authenticate returns the user for a correct username and password.
func Authenticate(users map[string]User, username, pw string) (User, bool) {
	u, ok := users[username]
	if !ok {
		CheckPassword(dummyHash, pw)
		return User{}, false
	}
	return u, CheckPassword(u.PasswordHash, pw)
}
