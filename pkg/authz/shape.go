package authz

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/sessiongate/sessiongate/pkg/token"
)

// A token's shape is which of a session's claims it carries: every custom
// claim or a named few (a route's claims), every role or only the ones the
// route's rule names (roles_in_token: matched). Identity headers grow with
// a user's roles and attributes until a proxy refuses them; a route that
// needs two claims need not carry forty.
//
// The shape never touches the claims sessiongate owns (sub, sid, tenant,
// exp, ...): claims selects among custom claims only, and roles_in_token
// only narrows roles. It applies to session tokens; service tokens carry no
// custom claims and all of the service's roles.

// RolesInToken says which of a session's roles a route's token carries.
type RolesInToken uint8

// The zero value is RolesAll: a rule that says nothing keeps today's tokens.
const (
	RolesAll RolesInToken = iota
	// RolesMatched carries only the session's roles that the rule's roles
	// list names; a rule without roles then carries none (roles: []). Never
	// all: a token that says less can only make an upstream refuse more.
	RolesMatched
)

// RolesInTokenValues are the values of roles_in_token, as written in config
// and in context_extensions.
var RolesInTokenValues = []string{"all", "matched"}

// ParseRolesInToken reads roles_in_token.
func ParseRolesInToken(s string) (RolesInToken, error) {
	switch s {
	case "all":
		return RolesAll, nil
	case "matched":
		return RolesMatched, nil
	}
	return 0, fmt.Errorf("unknown roles_in_token %q (want all or matched)", s)
}

func (r RolesInToken) String() string {
	if r == RolesMatched {
		return "matched"
	}
	return "all"
}

// ParseClaims reads a claims selection as Envoy's context_extensions carry
// it: comma-separated custom claim names, spaces or tabs around each
// allowed. "" selects no custom claim at all. A name token.CheckCustomClaim
// refuses (an owned claim such as sub or roles, or anything outside its
// ASCII set) or an empty element is an error: the selection was written by
// an operator, and one that cannot mean what it says is refused.
func ParseClaims(v string) ([]string, error) {
	out := []string{}
	if v == "" {
		return out, nil
	}
	for name := range strings.SplitSeq(v, ",") {
		name = strings.Trim(name, " \t")
		if err := CheckClaims([]string{name}); err != nil {
			return nil, err
		}
		out = append(out, name)
	}
	return out, nil
}

// CheckClaims reports the first name in a claims selection that is not a
// custom claim name (token.CheckCustomClaim): owned claims cannot be
// selected away, and naming one is a mistake.
func CheckClaims(names []string) error {
	for _, name := range names {
		if err := token.CheckCustomClaim(name); err != nil {
			return fmt.Errorf("claims: %w", err)
		}
	}
	return nil
}

// tokenShape is a token's shape other than the default (every claim, every
// role), which is a nil *tokenShape. Shapes are immutable once built.
type tokenShape struct {
	// id keys the token cache: two shapes with different ids never share a
	// token. Equal shapes usually share an id (see shapeTable), which only
	// saves signatures; it is never needed for correctness.
	id uint64
	// claims are the custom claims carried, sorted; nil carries all.
	claims []string
	// roles, when not nil, are the only roles carried (matched).
	roles []string
	// desc describes the shape for logs and explain.
	desc string
}

// cacheID is the shape's token cache key part: 0 for the default shape.
func (t *tokenShape) cacheID() uint64 {
	if t == nil {
		return 0
	}
	return t.id
}

func (t *tokenShape) String() string {
	if t == nil {
		return "all claims, all roles"
	}
	return t.desc
}

// custom returns the custom claims a token of this shape carries. It
// allocates only when it drops something.
func (t *tokenShape) custom(all map[string]string) map[string]string {
	if t == nil || t.claims == nil || len(all) == 0 {
		return all
	}
	out := make(map[string]string, min(len(t.claims), len(all)))
	for _, name := range t.claims {
		if v, ok := all[name]; ok {
			out[name] = v
		}
	}
	return out
}

// tokenRoles returns the roles a token of this shape carries, in the
// session's order.
func (t *tokenShape) tokenRoles(all []string) []string {
	if t == nil || t.roles == nil {
		return all
	}
	out := []string{}
	for _, r := range all {
		if slices.Contains(t.roles, r) {
			out = append(out, r)
		}
	}
	return out
}

// shapeTable hands out shape ids and remembers the context_extensions
// values already read, so a Check whose Envoy route sets claims or
// roles_in_token costs a map lookup, not a parse. Both maps are bounded:
// when one is full it is emptied, which costs re-parsing and, at worst, a
// fresh id (one more signature) for a shape seen before; ids are never
// reused, so a token is never served for a shape it was not signed for.
type shapeTable struct {
	mu   sync.RWMutex
	ids  map[string]uint64 // canonical form → id
	next uint64
	ext  map[extShapeKey]*tokenShape
}

// extShapeKey is what a shape from context_extensions depends on: the rule
// (its claims, roles and roles_in_token; nil for none) and the two extension
// values. The rule is a pointer into the rules in force, which a reload
// replaces, so a key from before a reload never matches after it.
type extShapeKey struct {
	rule                *Route
	claims, roles       string
	hasClaims, hasRoles bool
}

const (
	maxShapeIDs = 4096
	maxExtShape = 1024
)

func newShapeTable() *shapeTable {
	return &shapeTable{ids: map[string]uint64{}, ext: map[extShapeKey]*tokenShape{}}
}

// shape builds the shape for a claims selection (nil: all) and a roles
// selection (nil: all), or nil for the default shape.
func (st *shapeTable) shape(claims, roles []string) *tokenShape {
	if claims == nil && roles == nil {
		return nil
	}
	t := &tokenShape{roles: roles}
	var canon strings.Builder
	if claims != nil {
		t.claims = slices.Compact(slices.Sorted(slices.Values(claims)))
		if t.claims == nil {
			t.claims = []string{}
		}
		canon.WriteString("claims")
		for _, c := range t.claims {
			canon.WriteString(" " + c) // claim names hold no space
		}
		t.desc = "claims [" + strings.Join(t.claims, ", ") + "]"
	} else {
		canon.WriteString("all")
		t.desc = "all claims"
	}
	if roles != nil {
		canon.WriteString(";roles")
		for _, r := range slices.Compact(slices.Sorted(slices.Values(roles))) {
			canon.WriteString(" " + strconv.Quote(r))
		}
		t.desc += ", roles matched [" + strings.Join(roles, ", ") + "]"
	} else {
		t.desc += ", all roles"
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	id, ok := st.ids[canon.String()]
	if !ok {
		if len(st.ids) >= maxShapeIDs {
			clear(st.ids)
		}
		st.next++
		id = st.next
		st.ids[canon.String()] = id
	}
	t.id = id
	return t
}

// forRoute builds a rule's own shape.
func (st *shapeTable) forRoute(r *Route) *tokenShape {
	var roles []string
	if r.RolesInToken == RolesMatched {
		roles = append([]string{}, r.Roles...)
	}
	return st.shape(r.Claims, roles)
}

// fromExtensions returns the shape for a request whose context_extensions
// set claims or roles_in_token, over the rule's own (k.rule nil: no rule
// matched). An error is a malformed extension.
func (st *shapeTable) fromExtensions(k extShapeKey) (*tokenShape, error) {
	st.mu.RLock()
	t, ok := st.ext[k]
	st.mu.RUnlock()
	if ok {
		return t, nil
	}
	var claims, ruleRoles []string
	mode := RolesAll
	if r := k.rule; r != nil {
		claims, ruleRoles, mode = r.Claims, r.Roles, r.RolesInToken
	}
	if k.hasClaims {
		c, err := ParseClaims(k.claims)
		if err != nil {
			return nil, err
		}
		claims = c
	}
	if k.hasRoles {
		m, err := ParseRolesInToken(k.roles)
		if err != nil {
			return nil, err
		}
		mode = m
	}
	var roles []string
	if mode == RolesMatched {
		roles = append([]string{}, ruleRoles...)
	}
	t = st.shape(claims, roles)
	st.mu.Lock()
	if len(st.ext) >= maxExtShape {
		clear(st.ext)
	}
	st.ext[k] = t
	st.mu.Unlock()
	return t, nil
}

// resetExtensions forgets the extension values read for rules a reload
// replaced: they can no longer match, and would only hold memory.
func (st *shapeTable) resetExtensions() {
	st.mu.Lock()
	clear(st.ext)
	st.mu.Unlock()
}
