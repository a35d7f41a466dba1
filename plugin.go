// Package apppw is the module's root package: importing it, or giving its
// path to xcaddy (`xcaddy build --with github.com/caddy-apppw/caddy-apppw`),
// builds the app_password handler into Caddy. The handler itself lives in
// the caddyapppw package.
package apppw

import _ "github.com/caddy-apppw/caddy-apppw/caddyapppw"
