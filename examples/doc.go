// Package examples holds the deployment files: the web server examples
// (nginx.conf, lighttpd.conf, haproxy.cfg, Caddyfile; apache-example.conf
// sits at the repository root), the bridge configuration they expect
// (fcgi-bridge.toml) and the systemd units (fcgi-bridge.service,
// fcgi-bridge.socket). It has no code. Its tests run each server's own
// syntax check on the files, deploy every example the ways docs/deploy.md
// describes with the server running as its packaged user in front of a real
// bridge, replay what each server sends (testdata/pathinfo), and check
// make install and the units.
package examples
