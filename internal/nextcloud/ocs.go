package nextcloud

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
)

// The request headers every check sends, as the map holds them
// (canonical keys): shared, never modified, so a check does not allocate
// them again.
var (
	ocsAPIRequest = []string{"true"}
	acceptJSON    = []string{"application/json"}
)

// basicAuth is the Authorization value http.Request.SetBasicAuth sets,
// "Basic " and the Base64 of login:password, in one allocation rather
// than its five: the credentials are encoded on the stack when they fit.
func basicAuth(login, password string) string {
	const prefix = "Basic "
	var raw [256]byte
	var enc [344]byte // base64 of 256 bytes
	cred := append(append(append(raw[:0], login...), ':'), password...)
	b64 := base64.StdEncoding.AppendEncode(enc[:0], cred)
	var sb strings.Builder
	sb.Grow(len(prefix) + len(b64))
	sb.WriteString(prefix)
	sb.Write(b64)
	return sb.String()
}

// maxPooledBody bounds the buffers bodyBufs keeps: an answer of
// Nextcloud is about a kilobyte, and one odd large answer must not stay.
const maxPooledBody = 64 << 10

// bodyBufs are the buffers Nextcloud's answers are read into.
var bodyBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readBody reads at most maxOCSBody bytes of r into a pooled buffer, which
// the caller hands back with putBody.
func readBody(r io.Reader) (*bytes.Buffer, error) {
	buf := bodyBufs.Get().(*bytes.Buffer)
	_, err := buf.ReadFrom(io.LimitReader(r, maxOCSBody))
	return buf, err
}

func putBody(buf *bytes.Buffer) {
	if buf.Cap() <= maxPooledBody {
		buf.Reset()
		bodyBufs.Put(buf)
	}
}

// ocsUser is an OCS answer as the check reads it: its status, and the
// user id its data names.
type ocsUser struct {
	OCS struct {
		Meta struct {
			StatusCode int `json:"statuscode"`
		} `json:"meta"`
		Data struct {
			ID *string `json:"id"`
		} `json:"data"`
	} `json:"ocs"`
}

// readOCS reads an OCS answer: its status code and the user id its data
// names, nil when data is not an object with a string id ("[]" on a
// failure). err is set when body is not an OCS answer: not one JSON
// value, or ocs, meta or statuscode of the wrong type.
//
// Nextcloud's data is most of its answer (quota, groups, capabilities):
// decoding it in the same pass as the status, rather than keeping it
// raw and decoding it again, halves the JSON work of a check. One
// difference to decoding it apart: in an answer that names "data" twice,
// both objects fill the same fields, where the last alone would count.
func readOCS(body []byte) (status int, id *string, err error) {
	var ans ocsUser
	err = json.Unmarshal(body, &ans)
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && (te.Field == "ocs.data" || strings.HasPrefix(te.Field, "ocs.data.")) {
		// Not the answer of a login (or an odd one): the decoder
		// reports only the first wrong type, so one in meta after it
		// would go unseen, and a later "data" may name a user. Read it
		// again the slow way, data apart.
		return readOCSApart(body)
	}
	if err != nil {
		return 0, nil, err
	}
	return ans.OCS.Meta.StatusCode, ans.OCS.Data.ID, nil
}

// readOCSApart is readOCS in two steps: the answer with data raw, then
// data.
func readOCSApart(body []byte) (status int, id *string, err error) {
	var ans ocsAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		return 0, nil, err
	}
	var data struct {
		ID *string `json:"id"`
	}
	if json.Unmarshal(ans.OCS.Data, &data) != nil {
		return ans.OCS.Meta.StatusCode, nil, nil
	}
	return ans.OCS.Meta.StatusCode, data.ID, nil
}
