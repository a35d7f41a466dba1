package caddyapppw

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestValidUserID(t *testing.T) {
	for _, id := range []string{"alice", "Alice_2", "a.b-c@d", "o'brien", "j doe", strings.Repeat("x", 64), "..."} {
		if !validUserID(id) {
			t.Errorf("%q refused", id)
		}
	}
	for _, id := range []string{"", ".", "..", "a/b", "a\x00b", "a\nb", "é", strings.Repeat("x", 65), "a%2Fb", "a+b", "a\\b"} {
		if validUserID(id) {
			t.Errorf("%q accepted", id)
		}
	}
}

func TestPasswordFormats(t *testing.T) {
	cases := []struct {
		pw           string
		dflt, strict bool
	}{
		{"Abcde-Fghij-Klmno-Pqrst-Uvwxy", true, true},
		{"abcdefghijklmnopqrst", true, false},
		{strings.Repeat("a", 72), true, false},
		{strings.Repeat("a", 256), true, false},
		{strings.Repeat("a", 257), false, false},
		{strings.Repeat("a", 19), false, false},
		{"Abcde-Fghij-Klmno-Pqrst-Uvwx!", false, false},
		{"Abcde_Fghij_Klmno_Pqrst_Uvwxy", false, false},
		{"Abcdef-Fghij-Klmno-Pqrst-Uvwx", true, false},
		{"Abcde-Fghij-Klmno-Pqrst-Uvwxyz", true, false},
		{"", false, false},
	}
	for _, c := range cases {
		if got := formatDefault.valid(c.pw); got != c.dflt {
			t.Errorf("default(%q) = %v", c.pw, got)
		}
		if got := formatStrict.valid(c.pw); got != c.strict {
			t.Errorf("strict(%q) = %v", c.pw, got)
		}
	}
}

func TestBasicAuth(t *testing.T) {
	cases := []struct {
		header, user, pw string
		err              *apiError
	}{
		{"", "", "", errMissingAuth},
		{"Bearer x", "", "", errMissingAuth},
		{"Basic", "", "", errMissingAuth},
		{"Basic YWxpY2U6cHc=", "alice", "pw", nil},
		{"basic YWxpY2U6cHc=", "alice", "pw", nil},
		{"Basic YWxpY2U6cDp3", "alice", "p:w", nil},
		{"Basic YWxpY2U=", "", "", errBadAuthFormat},
		{"Basic %%%", "", "", errBadAuthFormat},
		{"Basic /w==", "", "", errBadAuthFormat},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		u, p, err := basicAuth(r)
		if u != c.user || p != c.pw || err != c.err {
			t.Errorf("%q: got (%q, %q, %v)", c.header, u, p, err)
		}
	}
}

func TestSecretsEqual(t *testing.T) {
	if !secretsEqual("abc", "abc") || secretsEqual("abc", "abd") || secretsEqual("abc", "abcd") || secretsEqual("", "x") {
		t.Fatal("secretsEqual is wrong")
	}
}

// TestSecretsEqualIsCryptoSubtle holds secretsEqual to crypto/subtle. A
// timing difference of a few nanoseconds cannot be measured reliably in a
// test, so this one reads the code instead: the declaration of
// secretsEqual must compare with subtle.ConstantTimeCompare and do nothing
// else that could end early — no ==, != or ordering except the one on
// ConstantTimeCompare's result, no loop, no call but sha256.Sum256, []byte
// conversions and ConstantTimeCompare — and no other file of the package
// may assign the variable. TestStoredPasswordComparedAgainstDummy shows
// the handler goes through secretsEqual; together, swapping the compare
// for == anywhere fails a test.
func TestSecretsEqualIsCryptoSubtle(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var body *ast.BlockStmt
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ValueSpec:
				for i, id := range n.Names {
					if id.Name == "secretsEqual" && i < len(n.Values) {
						if lit, ok := n.Values[i].(*ast.FuncLit); ok && body == nil && importsSubtle(f) {
							body = lit.Body
						}
					}
				}
			case *ast.FuncDecl:
				if n.Name.Name == "secretsEqual" && n.Recv == nil && body == nil && importsSubtle(f) {
					body = n.Body
				}
			case *ast.AssignStmt:
				for _, lhs := range n.Lhs {
					if id, ok := lhs.(*ast.Ident); ok && id.Name == "secretsEqual" {
						t.Errorf("%s: secretsEqual is reassigned", fset.Position(n.Pos()))
					}
				}
			}
			return true
		})
	}
	if body == nil {
		t.Fatal("no declaration of secretsEqual (in a file that imports crypto/subtle)")
	}
	usesSubtle := false
	ast.Inspect(body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.BinaryExpr:
			switch n.Op {
			case token.EQL, token.NEQ, token.LSS, token.GTR, token.LEQ, token.GEQ:
				if !isCall(n.X, "subtle", "ConstantTimeCompare") || !isIntLit(n.Y, 1) {
					t.Errorf("%s: secretsEqual compares with %s", fset.Position(n.Pos()), n.Op)
				}
			}
		case *ast.ForStmt, *ast.RangeStmt, *ast.IfStmt, *ast.SwitchStmt:
			t.Errorf("%s: secretsEqual branches or loops", fset.Position(n.Pos()))
		case *ast.CallExpr:
			switch {
			case isCall(n, "subtle", "ConstantTimeCompare"):
				usesSubtle = true
			case isCall(n, "sha256", "Sum256"):
			case isByteSliceConversion(n):
			default:
				t.Errorf("%s: secretsEqual calls something else", fset.Position(n.Pos()))
			}
		}
		return true
	})
	if !usesSubtle {
		t.Error("secretsEqual does not call subtle.ConstantTimeCompare")
	}
}

func importsSubtle(f *ast.File) bool {
	for _, imp := range f.Imports {
		if path, _ := strconv.Unquote(imp.Path.Value); path == "crypto/subtle" && (imp.Name == nil || imp.Name.Name == "subtle") {
			return true
		}
	}
	return false
}

func isCall(e ast.Expr, pkg, fn string) bool {
	call, ok := e.(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == pkg && sel.Sel.Name == fn
}

func isIntLit(e ast.Expr, v int) bool {
	lit, ok := e.(*ast.BasicLit)
	return ok && lit.Kind == token.INT && lit.Value == strconv.Itoa(v)
}

func isByteSliceConversion(call *ast.CallExpr) bool {
	arr, ok := call.Fun.(*ast.ArrayType)
	if !ok || arr.Len != nil {
		return false
	}
	id, ok := arr.Elt.(*ast.Ident)
	return ok && id.Name == "byte"
}
