package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The scopes a user's successive POSTs cycle through, so that Vault's
// record tells which change it holds.
var scopeCycle = []string{"notes.read", "notes.write", "calendar.read", "calendar.write", "files.read", "deck.read", "news.read"}

// answer is one request's outcome as the client saw it.
type answer struct {
	at     time.Time
	status int // 0: no answer (connection refused or cut)
	wrong  string
}

// recorder keeps every answer, and what each user asked for and got.
type recorder struct {
	mu      sync.Mutex
	answers []answer
	users   map[string]*userLog
	// attackerFailures are the 401s each attacker account got: failed
	// checks Nextcloud answered.
	attackerFailures map[string]int
	attackerOther    map[string]map[int]int
}

// userLog is what one load user's changes asked for: the scope of the
// last one answered 200, and the scopes of those sent after it whose
// outcome is unknown (no answer, or a 503 that may have been written).
type userLog struct {
	provisioned bool     // a change was answered 200
	last        string   // its scope
	unknown     []string // changes after it without a 200
	seq         int
	postedEpoch int32 // the epoch of the last POST answered 200
	posts200    int   // POSTs answered 200: the attempts it may have counted
}

func newRecorder() *recorder {
	return &recorder{users: map[string]*userLog{}, attackerFailures: map[string]int{}, attackerOther: map[string]map[int]int{}}
}

func (r *recorder) add(a answer) {
	r.mu.Lock()
	r.answers = append(r.answers, a)
	r.mu.Unlock()
}

// client sends each request to the next replica in turn, as a
// round-robin load balancer does, and to the one after when a replica
// refuses the connection (it is dead).
type client struct {
	http     *http.Client
	replicas []*replica
	next     atomic.Uint64
}

func newClient(replicas []*replica) *client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	return &client{http: &http.Client{Transport: tr, Timeout: 30 * time.Second}, replicas: replicas}
}

// do sends one request; status 0 when no replica answered.
func (c *client) do(method, path, user, pw, body string) (int, http.Header, []byte) {
	for range len(c.replicas) {
		r := c.replicas[c.next.Add(1)%uint64(len(c.replicas))]
		req, _ := http.NewRequest(method, "http://"+r.site+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pw)))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := c.http.Do(req)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue // a dead replica: the balancer moves on
			}
			return 0, nil, nil // cut mid-request: no answer
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header, b
	}
	return 0, nil, nil
}

// check is what an answer must be: the 200 of its route, or a 503 with
// Retry-After. Anything else (a 500, a 4xx, a 502) is a wrong answer.
func check(status int, h http.Header, body []byte, ok func(map[string]any) bool) string {
	switch status {
	case 0:
		return ""
	case 200:
		var m map[string]any
		if json.Unmarshal(body, &m) != nil || !ok(m) {
			return fmt.Sprintf("200 %s", body)
		}
		return ""
	case 503:
		if h.Get("Retry-After") == "" {
			return fmt.Sprintf("503 without Retry-After: %s", body)
		}
		return ""
	}
	return fmt.Sprintf("%d %s", status, body)
}

// epoch is bumped at each failure: every load user provisions (POST)
// once at the start and once after each of the Vault and Redis failures,
// and otherwise changes its scopes (PATCH). A successful POST counts as
// an attempt (docs/API.md): three in the run, under the limit.
var epoch atomic.Int32

// lastPostEpoch is the last epoch with a POST: the Redis failure's.
const lastPostEpoch = 2

// userLoop provisions uid once per epoch, changes its scopes (each time
// the next one) the rest of the time, and reads its status after each
// change: until stop is closed.
func userLoop(c *client, rec *recorder, uid string, stop <-chan struct{}) {
	rec.mu.Lock()
	u := rec.users[uid]
	if u == nil {
		u = &userLog{postedEpoch: -1}
		rec.users[uid] = u
	}
	rec.mu.Unlock()
	for {
		select {
		case <-stop:
			return
		default:
		}
		rec.mu.Lock()
		u.seq++
		scope := scopeCycle[u.seq%len(scopeCycle)]
		ep := epoch.Load()
		post := u.postedEpoch < min(ep, lastPostEpoch)
		rec.mu.Unlock()

		var st int
		var h http.Header
		var body []byte
		if post {
			st, h, body = c.do("POST", "/api/v1/users/"+uid+"/app-password", uid, password, `{"scopes":["`+scope+`"]}`)
		} else {
			st, h, body = c.do("PATCH", "/api/v1/users/"+uid+"/scopes", uid, password, `{"scopes":["`+scope+`"]}`)
		}
		wrong := check(st, h, body, func(m map[string]any) bool {
			s, _ := m["scopes"].([]any)
			return m["success"] == true && len(s) == 1 && s[0] == scope
		})
		rec.add(answer{at: time.Now(), status: st, wrong: wrong})
		rec.mu.Lock()
		if st == 200 && wrong == "" {
			u.provisioned, u.last, u.unknown = true, scope, nil
			if post {
				u.postedEpoch = ep
				u.posts200++
			}
		} else {
			u.unknown = append(u.unknown, scope)
		}
		provisioned := u.provisioned
		rec.mu.Unlock()

		st, h, body = c.do("GET", "/api/v1/users/"+uid+"/app-password", uid, password, "")
		wrong = check(st, h, body, func(m map[string]any) bool {
			// Once a change was answered 200 the record must be there.
			return m["success"] == true && m["user_id"] == uid && (!provisioned || m["has_app_password"] == true)
		})
		rec.add(answer{at: time.Now(), status: st, wrong: wrong})
	}
}

// attackerLoop sends a wrong password for uid every interval until stop.
func attackerLoop(c *client, rec *recorder, uid string, interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		st, _, _ := c.do("POST", "/api/v1/users/"+uid+"/app-password", uid, "Wrong-Passw-ordxx-xxxxx-xxxxx", "")
		rec.mu.Lock()
		if st == 401 {
			rec.attackerFailures[uid]++
		} else {
			if rec.attackerOther[uid] == nil {
				rec.attackerOther[uid] = map[int]int{}
			}
			rec.attackerOther[uid][st]++
		}
		rec.mu.Unlock()
	}
}
