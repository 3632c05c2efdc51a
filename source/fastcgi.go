package source

import (
	"fmt"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
)

// NewFastCGI builds a FastCGI upstream (php-fpm and friends).
func NewFastCGI(u *conf.Upstream) (Source, error) {
	return nil, fmt.Errorf("upstream %q: fastcgi upstreams need the fcgi client, not yet available", u.Name)
}
