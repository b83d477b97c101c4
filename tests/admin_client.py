"""A small HTTPS client for the admin UI tests: cookies, forms with their CSRF token, JSON.

Standard library only (http.client + ssl), so the suite needs no extra pip package. Each
client keeps its own cookie jar (name -> value) like one browser; `origin=True` sends the
`Origin` header a browser sends on form posts.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import re
import ssl
import urllib.parse


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        return jsonlib.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.text[:300]!r}>"


CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


class AdminClient:
    def __init__(self, endpoint: str, ssl_ctx: ssl.SSLContext):
        host, port = endpoint.rsplit(":", 1)
        self.host = host.strip("[]")
        self.port = int(port)
        self.ctx = ssl_ctx
        self.cookies: dict[str, str] = {}
        self.origin = f"https://{self.host}:{self.port}"

    def request(self, method: str, path: str, *, form: dict | None = None, json=None, body: bytes | None = None,
                headers: dict | None = None, origin: bool | str = True) -> Response:
        h = {"Host": f"{self.host}:{self.port}"}
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if method not in ("GET", "HEAD") and origin:
            h["Origin"] = self.origin if origin is True else origin
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            h["Content-Type"] = "application/x-www-form-urlencoded"
        elif json is not None:
            body = jsonlib.dumps(json).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=30)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            for c in r.headers.get_all("Set-Cookie") or []:
                name, _, rest = c.partition("=")
                value = rest.split(";", 1)[0]
                if "Max-Age=0" in c:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = value
            return Response(r.status, r.headers, data)
        finally:
            conn.close()

    def get(self, path: str, **kw) -> Response:
        return self.request("GET", path, **kw)

    def csrf(self, path: str = "/") -> str:
        r = self.get(path)
        m = CSRF_RE.search(r.text)
        assert m, f"no csrf field on {path}: {r}"
        return m.group(1)

    def post_form(self, path: str, fields: dict, *, csrf_from: str | None = None, **kw) -> Response:
        """Posts a form the way the browser would after loading `csrf_from` (default: `path`)."""
        fields = dict(fields)
        fields.setdefault("csrf", self.csrf(csrf_from or path))
        return self.request("POST", path, form=fields, **kw)

    def session(self) -> str | None:
        return self.cookies.get("__Host-hermes_admin")

    def setup(self, token: str, name: str, password: str) -> Response:
        return self.post_form("/setup", {"token": token, "name": name, "new_password": password, "confirm": password})

    def login(self, name: str, password: str) -> Response:
        return self.post_form("/login", {"name": name, "password": password})

    def api(self, method: str, path: str, json=None, token: str | None = None, **kw) -> Response:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
            kw.setdefault("origin", False)
        elif method not in ("GET", "HEAD"):
            headers.setdefault("X-CSRF-Token", self.csrf("/"))
        return self.request(method, path, json=json, headers=headers, **kw)


def setup_token(log_text: str) -> str:
    m = re.findall(r"hermes: admin setup token: (\S+)", log_text)
    assert m, "hermes up printed no admin setup token"
    return m[-1]
