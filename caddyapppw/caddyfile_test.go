package caddyapppw

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// handlerJSON parses an app_password block and returns the handler's JSON.
func handlerJSON(t *testing.T, block string) (string, error) {
	t.Helper()
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(block)); err != nil {
		return "", err
	}
	out, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	return string(out), nil
}

// caddyfileOptionCases are app_password blocks and the handler JSON each
// one gives. TestAdaptGolden also pins the whole adapted config of each.
var caddyfileOptionCases = []struct{ block, want string }{
	{`app_password {
			nextcloud https://cloud.example.com
		}`, `{"nextcloud":{"url":"https://cloud.example.com"}}`},
	{`app_password {
			prefix /mcp/api/v1
			password_format strict
			scopes notes.read notes.write
			scopes mail.send
		}`, `{"prefix":"/mcp/api/v1","password_format":"strict","scopes":["notes.read","notes.write","mail.send"]}`},
	{`app_password {
			nextcloud {
				url {env.NEXTCLOUD_URL}
				timeout 3s
				ca_cert /etc/ca.pem
				insecure_skip_verify
			}
		}`, `{"nextcloud":{"url":"{env.NEXTCLOUD_URL}","timeout":3000000000,"ca_cert":"/etc/ca.pem","insecure_skip_verify":true}}`},
	{`app_password {
			vault https://vault:8200 {
				token {env.VAULT_TOKEN}
				namespace team-a
				mount kv
				path_prefix mcp/pw
				kv_version 1
				timeout 2s
				max_retries -1
			}
		}`, `{"vault":{"address":"https://vault:8200","token":"{env.VAULT_TOKEN}","namespace":"team-a","mount":"kv","path_prefix":"mcp/pw","kv_version":1,"timeout":2000000000,"max_retries":-1}}`},
	{`app_password {
			vault {
				address http://127.0.0.1:8200
			}
		}`, `{"vault":{"address":"http://127.0.0.1:8200"}}`},
	{`app_password {
			rate_limit 10 30m {
				max_users 500
				zone shared
			}
		}`, `{"rate_limit":{"attempts":10,"window":1800000000000,"max_users":500,"zone":"shared"}}`},
	{`app_password {
			rate_limit {
				attempts 3
				window 1d
			}
		}`, `{"rate_limit":{"attempts":3,"window":86400000000000}}`},
	{`app_password {
			rate_limit 5 1h {
				redis rediss://redis.internal:6380/2 {
					password {env.REDIS_PASSWORD}
					timeout 50ms
					key_prefix mcp
					ca_cert /etc/redis-ca.pem
				}
				on_error deny
			}
		}`, `{"rate_limit":{"attempts":5,"window":3600000000000,"redis":{"url":"rediss://redis.internal:6380/2","password":"{env.REDIS_PASSWORD}","ca_cert":"/etc/redis-ca.pem","timeout":50000000,"key_prefix":"mcp","on_error":"deny"}}}`},
	{`app_password {
			rate_limit 5 1h {
				redis {
					sentinel mymaster 10.0.0.11:26379 10.0.0.12:26379 10.0.0.13:26379
					sentinel_password {env.SENTINEL_PASSWORD}
					password {env.REDIS_PASSWORD}
				}
			}
		}`, `{"rate_limit":{"attempts":5,"window":3600000000000,"redis":{"sentinel":{"master_name":"mymaster","addresses":["10.0.0.11:26379","10.0.0.12:26379","10.0.0.13:26379"],"password":"{env.SENTINEL_PASSWORD}"},"password":"{env.REDIS_PASSWORD}"}}}`},
	{`app_password {
			rate_limit {
				redis rediss://default@/1 {
					sentinel_username watcher
					sentinel primary s1:26379
				}
			}
		}`, `{"rate_limit":{"redis":{"url":"rediss://default@/1","sentinel":{"master_name":"primary","addresses":["s1:26379"],"username":"watcher"}}}}`},
	{`app_password {
			deliver_to_mcp http://nextcloud-mcp:8000 {
				interval 10s
				give_up 2h
			}
		}`, `{"deliver_to_mcp":true,"mcp_server":"http://nextcloud-mcp:8000","redelivery_interval":10000000000,"redelivery_give_up":7200000000000}`},
}

func TestCaddyfileOptions(t *testing.T) {
	for _, c := range caddyfileOptionCases {
		got, err := handlerJSON(t, c.block)
		if err != nil {
			t.Fatalf("%s: %v", c.block, err)
		}
		if got != c.want {
			t.Errorf("%s\ngot  %s\nwant %s", c.block, got, c.want)
		}
	}
}

func TestCaddyfileErrors(t *testing.T) {
	cases := []struct{ block, want string }{
		{"app_password extra", "wrong argument count"},
		{"app_password {\n bogus 1\n}", "unrecognized app_password option 'bogus'"},
		{"app_password {\n nextcloud a b\n}", "wrong argument count"},
		{"app_password {\n nextcloud x {\n colour red\n }\n}", "unrecognized nextcloud option 'colour'"},
		{"app_password {\n nextcloud x {\n timeout -3s\n }\n}", "timeout: '-3s' is not a positive duration"},
		{"app_password {\n nextcloud x {\n timeout soon\n }\n}", "timeout: 'soon' is not a positive duration"},
		{"app_password {\n vault {\n kv_version two\n }\n}", "kv_version: 'two' is not a positive integer"},
		{"app_password {\n vault {\n tokenx y\n }\n}", "unrecognized vault option 'tokenx'"},
		{"app_password {\n vault {\n max_retries -2\n }\n}", "max_retries: '-2' is not a positive integer"},
		{"app_password {\n rate_limit 0\n}", "rate_limit: attempts must be a positive integer, not '0'"},
		{"app_password {\n rate_limit 5 -1h\n}", "rate_limit: window must be a positive duration, not '-1h'"},
		{"app_password {\n rate_limit 5 1h 3\n}", "wrong argument count"},
		{"app_password {\n rate_limit {\n max_users -5\n }\n}", "max_users: '-5' is not a positive integer"},
		{"app_password {\n prefix\n}", "wrong argument count"},
		{"app_password {\n scopes\n}", "wrong argument count"},
		{"app_password {\n rate_limit {\n on_error deny\n }\n}", "rate_limit: on_error goes with redis <url>"},
		{"app_password {\n rate_limit {\n redis\n }\n}", "redis: give a url, or a sentinel line in its block"},
		{"app_password {\n rate_limit {\n redis a b\n }\n}", "wrong argument count"},
		{"app_password {\n rate_limit {\n redis {\n sentinel mymaster\n }\n }\n}", "sentinel: give the master name and at least one sentinel address"},
		{"app_password {\n rate_limit {\n redis {\n sentinel\n }\n }\n}", "wrong argument count"},
		{"app_password {\n rate_limit {\n redis {\n sentinel_password x\n }\n }\n}", "redis: give a url, or a sentinel line in its block"},
		{"app_password {\n rate_limit {\n redis redis://r {\n db 3\n }\n }\n}", "unrecognized redis option 'db'"},
		{"app_password {\n deliver_to_mcp\n}", "deliver_to_mcp needs the MCP server's address"},
		{"app_password {\n deliver_to_mcp a b\n}", "wrong argument count"},
		{"app_password {\n deliver_to_mcp a {\n interval never\n }\n}", "interval: 'never' is not a positive duration"},
		{"app_password {\n deliver_to_mcp a {\n retries 3\n }\n}", "unrecognized deliver_to_mcp option 'retries'"},
	}
	for _, c := range cases {
		_, err := handlerJSON(t, c.block)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want it to say %q", c.block, err, c.want)
		}
	}
}

// validate adapts a whole Caddyfile and provisions it as `caddy validate`
// and `caddy run` do, without serving.
func validate(t *testing.T, text string) error {
	t.Helper()
	var cfg caddy.Config
	if err := json.Unmarshal(adapt(t, text), &cfg); err != nil {
		t.Fatal(err)
	}
	return caddy.Validate(&cfg)
}

func TestProvisionErrorsNameTheOption(t *testing.T) {
	t.Setenv("VAULT_ADDR", "")
	site := func(block string) string {
		return "{\n\tadmin off\n}\nhttp://127.0.0.1:0 {\n\tapp_password {\n" + block + "\n\t}\n}\n"
	}
	cases := []struct{ block, want string }{
		{"vault http://127.0.0.1:8200", "nextcloud: url is required"},
		{"nextcloud http://nc\n", "vault: address is required: set it in the vault block or in VAULT_ADDR"},
		{"nextcloud ftp://nc\nvault http://v", `nextcloud: url "ftp://nc" is not an absolute http(s) URL`},
		{"nextcloud nc.example.com\nvault http://v", `nextcloud: url "nc.example.com" is not an absolute http(s) URL`},
		{"nextcloud http://nc {\nca_cert /nonexistent.pem\n}\nvault http://v", "nextcloud: ca_cert: open /nonexistent.pem"},
		{"nextcloud http://nc\nvault http://v {\nkv_version 3\n}", "vault: kv_version must be 1 or 2, not 3"},
		{"nextcloud http://nc\nvault http://v\npassword_format loose", `password_format: "loose" is neither default nor strict`},
		{"nextcloud http://nc\nvault http://v\nprefix api", `prefix: "api" must start with /`},
		{"nextcloud http://nc\nvault http://v\nscopes a a", `scopes: scope "a" listed twice`},
		{"nextcloud http://nc\nvault http://v\nrate_limit {\nredis ftp://r\n}", "rate_limit: redis: url: "},
		{"nextcloud http://nc\nvault http://v\nrate_limit {\nredis redis://r {\nca_cert /x.pem\n}\n}", "rate_limit: redis: ca_cert needs a rediss:// url"},
		{"nextcloud http://nc\nvault http://v\nrate_limit {\nredis redis://r\non_error maybe\n}", `rate_limit: redis: on_error: "maybe" is neither local nor deny`},
		{"nextcloud http://nc\nvault http://v\nrate_limit {\nredis redis://:pw@r:6379/0 {\nsentinel m 127.0.0.1:26379\n}\n}", "rate_limit: redis: url: with sentinel the url names no host (the sentinels name the primary): redis://r:6379"},
		{"nextcloud http://nc\nvault http://v\ndeliver_to_mcp ftp://mcp", `deliver_to_mcp: the MCP server's address "ftp://mcp" is not an http(s)://host[:port] URL`},
		{"nextcloud http://nc\nvault http://v\ndeliver_to_mcp mcp:8000 {\ninterval 1ms\n}", "deliver_to_mcp: interval must be at least 100ms"},
	}
	for _, c := range cases {
		err := validate(t, site(c.block))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want it to say %q", c.block, err, c.want)
		}
	}
	// VAULT_ADDR stands in for the address, and nothing is dialled.
	t.Setenv("VAULT_ADDR", "http://127.0.0.1:1")
	if err := validate(t, site("nextcloud http://127.0.0.1:1")); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
}

func TestDirectiveOrder(t *testing.T) {
	// Written last, it still runs before basic_auth and reverse_proxy.
	cfg := string(adapt(t, `http://127.0.0.1:0 {
	reverse_proxy 127.0.0.1:9
	basic_auth {
		admin $2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG
	}
	app_password {
		nextcloud http://nc
	}
}`))
	ap, ba, rp := strings.Index(cfg, `"handler":"app_password"`), strings.Index(cfg, `"handler":"authentication"`), strings.Index(cfg, `"handler":"reverse_proxy"`)
	if ap < 0 || ba < 0 || rp < 0 || ap > ba || ba > rp {
		t.Fatalf("handler order wrong: app_password@%d basic_auth@%d reverse_proxy@%d\n%s", ap, ba, rp, cfg)
	}
}

func TestCaddyfileExample(t *testing.T) {
	text, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"SITE_ADDRESS", "NEXTCLOUD_URL", "VAULT_ADDR", "MCP_UPSTREAM", "CADDY_ADMIN"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen []string `json:"listen"`
					Routes []struct {
						Handle []json.RawMessage `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(adapt(t, string(text)), &cfg); err != nil {
		t.Fatal(err)
	}
	srv := cfg.Apps.HTTP.Servers["srv0"]
	if len(srv.Listen) != 1 || srv.Listen[0] != ":8080" || len(srv.Routes) != 1 || len(srv.Routes[0].Handle) != 2 {
		t.Fatalf("unexpected server: %+v", srv)
	}
	const want = `{"deliver_to_mcp":true,"handler":"app_password","mcp_server":"127.0.0.1:8000","nextcloud":{"timeout":10000000000,"url":"http://127.0.0.1:8081"},` +
		`"password_format":"default","prefix":"/api/v1","rate_limit":{"attempts":5,"max_users":100000,"window":3600000000000},` +
		`"vault":{"address":"http://127.0.0.1:8200","kv_version":2,"max_retries":2,"mount":"secret",` +
		`"path_prefix":"nextcloud-mcp/app-passwords","timeout":10000000000,"token":"{env.VAULT_TOKEN}"}}`
	if got := string(srv.Routes[0].Handle[0]); got != want {
		t.Fatalf("app_password handler:\ngot  %s\nwant %s", got, want)
	}
	if rp := string(srv.Routes[0].Handle[1]); !strings.Contains(rp, `"handler":"reverse_proxy"`) || !strings.Contains(rp, `"dial":"127.0.0.1:8000"`) {
		t.Fatalf("second handler: %s", rp)
	}
	// And it provisions: every option it shows is valid.
	if err := validate(t, strings.Replace(string(text), "admin {$CADDY_ADMIN:localhost:2019}", "admin off", 1)); err != nil {
		t.Fatal(err)
	}
}
