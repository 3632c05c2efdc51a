<?php
// The PHP application behind the bridge's fastcgi upstream in the e2e tests.
$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH);
if (str_starts_with($path, '/php/redirect')) {
    header('Location: /php/elsewhere', true, 302);
    exit;
}
if (str_starts_with($path, '/php/missing')) {
    http_response_code(404);
    header('Content-Type: text/plain');
    echo "no such thing\n";
    exit;
}
header('Content-Type: text/plain; charset=utf-8');
header('X-Php: yes');
setcookie('first', 'one');
setcookie('second', 'two');
echo "hello from php ", PHP_MAJOR_VERSION, "\n";
echo "method=", $_SERVER['REQUEST_METHOD'], " q=", $_GET['q'] ?? '', "\n";
echo "body=", file_get_contents('php://input'), "\n";
