package hubapi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sessionledger/sessionledger/internal/atomicfile"
)

// AdminTokenFile is the name of the admin token file in hubd's data
// directory. Each non-comment line is "name token [role]": the name is the
// actor recorded for the token's calls, the role what it may call (admin
// when left out). A line of just a token is named "admin" with role admin.
// Files written before roles existed keep working: every token is admin.
const AdminTokenFile = "admin.token"

// Role is what an admin token may call.
type Role string

// The roles, each allowed what the one before it is and more.
const (
	// RoleAuditor reads: the Audit service, Admin.ListSessions,
	// Admin.GetSession and Admin.ClusterStatus.
	RoleAuditor Role = "auditor"
	// RoleOperator also acts on sessions: Kick, Ban, Unban, Notify,
	// Revoke.
	RoleOperator Role = "operator"
	// RoleAdmin may call everything, Admin.Backup included.
	RoleAdmin Role = "admin"
)

// Roles lists the roles, least first.
var Roles = []Role{RoleAuditor, RoleOperator, RoleAdmin}

func (r Role) rank() int { return slices.Index(Roles, r) }

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r.rank() >= 0 }

// Allows reports whether a token of role r may call what needs role need.
func (r Role) Allows(need Role) bool { return r.Valid() && r.rank() >= need.rank() }

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	if !r.Valid() {
		return "", fmt.Errorf("unknown role %q (want auditor, operator or admin)", s)
	}
	return r, nil
}

// AdminToken is one line of the admin token file.
type AdminToken struct {
	// Name is the actor recorded for the token's calls ("" for a line of
	// just a token: the hub then records the caller's client certificate
	// subject if it has one, else "admin").
	Name  string
	Token string
	Role  Role
}

// MinAdminTokenLen is the shortest admin token hubd accepts.
const MinAdminTokenLen = 16

// LoadOrCreateAdminTokens reads dir/admin.token, creating it (mode 0600,
// one random token named "admin" with role admin) when it does not exist.
// created says whether it did. The file appears complete or not at all; if
// another process creates it first, that one is read.
func LoadOrCreateAdminTokens(dir string) (tokens []AdminToken, created bool, err error) {
	path := filepath.Join(dir, AdminTokenFile)
	tokens, err = ReadAdminTokenFile(path)
	if err == nil {
		return tokens, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	content, tok := newAdminTokenFile()
	if created, err = atomicfile.CreateOnce(path, content); err != nil {
		return nil, false, fmt.Errorf("create admin token: %w", err)
	}
	if !created {
		tokens, err = ReadAdminTokenFile(path)
		return tokens, false, err
	}
	return []AdminToken{tok}, true, nil
}

// NewAdminTokenFile returns the content of a new admin token file, as
// LoadOrCreateAdminTokens writes it: one random token named "admin" with
// role admin. A cluster's first node shares it with the others.
func NewAdminTokenFile() []byte {
	b, _ := newAdminTokenFile()
	return b
}

func newAdminTokenFile() ([]byte, AdminToken) {
	tok := AdminToken{Name: "admin", Token: randomToken(), Role: RoleAdmin}
	return []byte(adminTokenHeader + tok.line()), tok
}

const adminTokenHeader = "# sessionledger admin tokens: one \"name token [role]\" per line; roles: auditor, operator, admin (default)\n"

// line is t as a line of the file; a token without a name is an admin
// (a line of just a token can say nothing else).
func (t AdminToken) line() string {
	if t.Name == "" {
		return t.Token + "\n"
	}
	role := t.Role
	if role == "" {
		role = RoleAdmin
	}
	return fmt.Sprintf("%s %s %s\n", t.Name, t.Token, role)
}

// ReadAdminTokens parses an admin token file into token → actor, for
// callers that know nothing of roles. It refuses a file that other users
// can read.
func ReadAdminTokens(path string) (map[string]string, error) {
	toks, err := ReadAdminTokenFile(path)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(toks))
	for _, t := range toks {
		name := t.Name
		if name == "" {
			name = "admin"
		}
		out[t.Token] = name
	}
	return out, nil
}

// ReadAdminTokenFile parses an admin token file, in file order. It refuses
// a file that other users can read or write (ErrSecretFileMode), and what
// ParseAdminTokens refuses.
func ReadAdminTokenFile(path string) ([]AdminToken, error) {
	b, err := ReadSecretFile(path)
	if err != nil {
		return nil, err
	}
	return ParseAdminTokens(path, b)
}

// ParseAdminTokens parses the content of an admin token file (name names
// it in errors), in file order. It refuses an unknown role, a token
// shorter than MinAdminTokenLen, a name or token given twice, and a file
// without a token.
func ParseAdminTokens(name string, b []byte) ([]AdminToken, error) {
	var out []AdminToken
	var err error
	names, tokens := map[string]bool{}, map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		t := AdminToken{Role: RoleAdmin}
		switch len(fields) {
		case 1:
			t.Token = fields[0]
		case 2:
			t.Name, t.Token = fields[0], fields[1]
		case 3:
			t.Name, t.Token = fields[0], fields[1]
			if t.Role, err = ParseRole(fields[2]); err != nil {
				return nil, fmt.Errorf("admin token file %s line %d: %w", name, n, err)
			}
		default:
			return nil, fmt.Errorf("admin token file %s line %d: want \"name token [role]\"", name, n)
		}
		if len(t.Token) < MinAdminTokenLen {
			return nil, fmt.Errorf("admin token file %s line %d: the token is %d characters; want at least %d", name, n, len(t.Token), MinAdminTokenLen)
		}
		if t.Name != "" && names[t.Name] || tokens[t.Token] {
			return nil, fmt.Errorf("admin token file %s line %d: a name or token given twice", name, n)
		}
		names[t.Name], tokens[t.Token] = true, true
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("admin token file %s holds no token", name)
	}
	return out, nil
}

// FormatAdminTokens is the content of an admin token file holding toks,
// as AddAdminToken and RemoveAdminToken write it.
func FormatAdminTokens(toks []AdminToken) []byte {
	var b bytes.Buffer
	b.WriteString(adminTokenHeader)
	for _, t := range toks {
		b.WriteString(t.line())
	}
	return b.Bytes()
}

// MergeAdminTokens merges two changes of one admin token file: mine and
// theirs were both made from base (a cluster's nodes, each changing its
// copy). The result is theirs with mine's changes applied: the tokens
// mine removed from base removed, the ones it added or changed (name or
// role) added or changed. It fails when the result is not a valid file (a
// name given twice: both sides added a token of that name) or when one of
// the three does not parse.
func MergeAdminTokens(base, mine, theirs []byte) ([]byte, error) {
	var parsed [3][]AdminToken
	for i, b := range [3][]byte{base, mine, theirs} {
		toks, err := ParseAdminTokens([3]string{"(base)", "(this node's)", "(the cluster's)"}[i], b)
		if err != nil {
			return nil, err
		}
		parsed[i] = toks
	}
	inBase := make(map[string]AdminToken, len(parsed[0]))
	for _, t := range parsed[0] {
		inBase[t.Token] = t
	}
	inMine := make(map[string]bool, len(parsed[1]))
	for _, t := range parsed[1] {
		inMine[t.Token] = true
	}
	var out []AdminToken
	for _, t := range parsed[2] {
		if _, had := inBase[t.Token]; had && !inMine[t.Token] {
			continue // removed here
		}
		out = append(out, t)
	}
	for _, t := range parsed[1] {
		if b, had := inBase[t.Token]; had && b == t {
			continue // not changed here
		}
		if i := slices.IndexFunc(out, func(o AdminToken) bool { return o.Token == t.Token }); i >= 0 {
			out[i] = t
		} else {
			out = append(out, t)
		}
	}
	b := FormatAdminTokens(out)
	if _, err := ParseAdminTokens("(merged)", b); err != nil {
		return nil, fmt.Errorf("the changes conflict: %w", err)
	}
	return b, nil
}

// LockAdminTokens takes the lock AddAdminToken and RemoveAdminToken hold
// while they change dir's admin token file, and returns its release: a
// process that rewrites the file under it loses none of their changes.
func LockAdminTokens(dir string) (unlock func(), err error) {
	unlock, err = lockFile(filepath.Join(dir, "."+AdminTokenFile+".lock"))
	if err != nil {
		return nil, fmt.Errorf("lock the admin token file: %w", err)
	}
	return unlock, nil
}

// FirstAdminToken returns the first token in the admin token file at path
// (in file order), for hubctl and auditq: the one hubd created, unless an
// operator put another line first.
func FirstAdminToken(path string) (string, error) {
	toks, err := ReadAdminTokenFile(path)
	if err != nil {
		return "", err
	}
	return toks[0].Token, nil
}

// AddAdminToken adds a token named name with role to the admin token file
// in dir (creating the file if needed) and returns it. The file is
// rewritten whole (a temporary file renamed over it, mode 0600), so hubd,
// which re-reads it when it changes, never sees half of it; concurrent
// changes through this package are serialised with a lock file beside it.
func AddAdminToken(dir, name string, role Role) (AdminToken, error) {
	if !role.Valid() {
		return AdminToken{}, fmt.Errorf("unknown role %q (want auditor, operator or admin)", role)
	}
	if name == "" || strings.ContainsAny(name, " \t\r\n#") || len(name) > MaxNameBytes {
		return AdminToken{}, fmt.Errorf("a token name is 1 to %d characters without spaces or #", MaxNameBytes)
	}
	t := AdminToken{Name: name, Token: randomToken(), Role: role}
	err := editAdminTokens(dir, func(toks []AdminToken) ([]AdminToken, error) {
		for _, o := range toks {
			if o.Name == name {
				return nil, fmt.Errorf("a token named %q exists already (remove it first)", name)
			}
		}
		return append(toks, t), nil
	})
	return t, err
}

// RemoveAdminToken removes the token named name from the admin token file
// in dir. The last token cannot be removed: hubd needs one.
func RemoveAdminToken(dir, name string) error {
	return editAdminTokens(dir, func(toks []AdminToken) ([]AdminToken, error) {
		i := slices.IndexFunc(toks, func(t AdminToken) bool { return t.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("no token named %q", name)
		}
		if len(toks) == 1 {
			return nil, errors.New("that is the last admin token; add another first")
		}
		return slices.Delete(toks, i, i+1), nil
	})
}

// editAdminTokens rewrites dir's admin token file with what edit makes of
// its tokens (none if it does not exist yet), under the lock file.
func editAdminTokens(dir string, edit func([]AdminToken) ([]AdminToken, error)) error {
	unlock, err := LockAdminTokens(dir)
	if err != nil {
		return err
	}
	defer unlock()
	path := filepath.Join(dir, AdminTokenFile)
	toks, err := ReadAdminTokenFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if toks, err = edit(toks); err != nil {
		return err
	}
	return atomicfile.Replace(path, FormatAdminTokens(toks))
}
