#!/usr/bin/env python3
"""A fake Kubernetes API server speaking the real list+watch protocol over TLS, for kdp's tests.

Python 3 standard library plus the `openssl` CLI (which makes a throwaway CA at start). Listens on
127.0.0.1 on an ephemeral port. Shapes follow the real API server:
  - LIST:  {"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"N","continue":..},
            "items":[...]} with items WITHOUT kind/apiVersion; `limit`/`continue` paging served
           from a snapshot, as etcd does; `fieldSelector` (metadata.name, metadata.namespace,
           spec.nodeName, `=`, `==`, `!=`).
  - WATCH: 200, Transfer-Encoding: chunked, one JSON event per line
           {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}; replays history after
           `resourceVersion`; a too-old resourceVersion gets an ERROR event with a 410 Status;
           `timeoutSeconds` ends the watch cleanly; objects leaving/entering a field selector are
           sent as DELETED/ADDED.
  - GET:   one namespaced object, /api/v1/namespaces/NS/pods/NAME (any namespaced resource), with
           kind and apiVersion; 404 NotFound Status when it does not exist.
  - errors are Status objects: {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
           "message":..,"reason":..,"code":N}.
  - auth: with --token, a request needs "Authorization: Bearer TOKEN" or a client certificate
           signed by the client CA; otherwise 401.

Control: the test writes one JSON command per line on stdin and reads one JSON reply per line on
stdout. The first stdout line is {"port":N,"dir":D,"ca":..,"client_cert":..,"client_key":..,
"wrong_ca":..}. EOF on stdin stops the server. Commands ("op"):
  create/update/delete {path, object | namespace+name, silent?}   silent: no event, history lost
  expire            every open watch gets ERROR 410 and ends; older resourceVersions are gone
  gone_http {count} the next `count` watch requests answer HTTP 410
  bookmark          the global resourceVersion advances; open watches get a BOOKMARK
  drop              open watches are cut without the last chunk
  fail {count, status}   the next `count` requests fail: HTTP `status`, or status 0 = hang up
  set {chunk_size?, token?, expire_continue_after?}   chunk_size N>0 writes every event in
                    N-byte HTTP chunks; expire_continue_after N: continue tokens expire (410)
                    once N list pages have been served
  expire_continue   outstanding continue tokens become 410
  requests / clear_requests   the request log: [{"path","query","auth","status"}]
  events            the Events POSTed to /api/v1/namespaces/NS/events, as received
  watchers          how many watches are open
  state             resourceVersion and object keys per path
"""

import argparse
import base64
import copy
import datetime
import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

RESOURCES = {
    "/api/v1/nodes": ("Node", "v1", False),
    "/api/v1/namespaces": ("Namespace", "v1", False),
    "/api/v1/pods": ("Pod", "v1", True),
    "/api/v1/services": ("Service", "v1", True),
    "/apis/discovery.k8s.io/v1/endpointslices": ("EndpointSlice", "discovery.k8s.io/v1", True),
    "/apis/networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", "networking.k8s.io/v1", True),
}


def log(msg):
    print(f"fake-apiserver: {msg}", file=sys.stderr, flush=True)


def status_obj(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def key_of(obj):
    md = obj["metadata"]
    return f'{md["namespace"]}/{md["name"]}' if md.get("namespace") else md["name"]


def parse_selector(sel):
    """fieldSelector -> list of (field, op, value); raises ValueError like the API server."""
    terms = []
    if not sel:
        return terms
    for term in sel.split(","):
        for op in ("!=", "==", "="):
            if op in term:
                field, value = term.split(op, 1)
                break
        else:
            raise ValueError(f"invalid selector: '{sel}'; can't understand '{term}'")
        if field not in ("metadata.name", "metadata.namespace", "spec.nodeName"):
            raise ValueError(f'field label not supported: {field}')
        terms.append((field, "!=" if op == "!=" else "=", value))
    return terms


def field_value(obj, field):
    cur = obj
    for part in field.split("."):
        cur = cur.get(part, {}) if isinstance(cur, dict) else {}
    return cur if isinstance(cur, str) else ""


def matches(obj, terms):
    for field, op, value in terms:
        eq = field_value(obj, field) == value
        if eq != (op == "="):
            return False
    return True


class Watcher:
    def __init__(self, path, terms):
        self.path = path
        self.terms = terms
        self.queue = []  # ("event", dict) | ("gone",) | ("drop",)


class State:
    def __init__(self, token):
        self.lock = threading.Condition()
        self.rv = 100
        self.compacted = 0  # watches from a resourceVersion below this get 410
        self.objects = {p: {} for p in RESOURCES}
        self.history = []  # (rv, path, type, obj, old_obj)
        self.watchers = set()
        self.snapshots = {}  # continue id -> (rv, [items])
        self.requests = []
        self.token = token
        self.chunk_size = 0
        self.fail_next = []  # statuses
        self.expire_continue_after = 0  # >0: continue tokens die after this many pages
        self.pages_served = 0
        self.gone_http = 0
        self.events = []  # core/v1 Events POSTed by the client, as received

    # Called with the lock held.
    def record(self, path, etype, obj, old):
        self.history.append((self.rv, path, etype, obj, old))
        for w in self.watchers:
            if w.path == path:
                ev = self.event_for(w.terms, etype, obj, old)
                if ev:
                    w.queue.append(("event", ev))
        self.lock.notify_all()

    @staticmethod
    def event_for(terms, etype, obj, old):
        now = matches(obj, terms)
        before = old is not None and matches(old, terms)
        if etype == "MODIFIED":
            if now and not before:
                etype = "ADDED"
            elif before and not now:
                etype = "DELETED"
            elif not now:
                return None
        elif not now:
            return None
        return {"type": etype, "object": copy.deepcopy(obj)}

    def mutate(self, cmd):
        path = cmd["path"]
        if path not in RESOURCES:
            return {"error": f"unknown path {path}"}
        kind, api_version, namespaced = RESOURCES[path]
        store = self.objects[path]
        op = cmd["op"]
        silent = cmd.get("silent", False)
        with self.lock:
            if op == "delete":
                ns = cmd.get("namespace", "default" if namespaced else "")
                key = f"{ns}/{cmd['name']}" if namespaced else cmd["name"]
                if key not in store:
                    return {"error": f"{key} not found"}
                self.rv += 1
                old = store.pop(key)
                obj = copy.deepcopy(old)
                obj["metadata"]["resourceVersion"] = str(self.rv)
                etype = "DELETED"
            else:
                obj = copy.deepcopy(cmd["object"])
                obj["kind"] = kind
                obj["apiVersion"] = api_version
                md = obj.setdefault("metadata", {})
                if namespaced:
                    md.setdefault("namespace", "default")
                else:
                    md.pop("namespace", None)
                key = key_of(obj)
                old = store.get(key)
                if op == "create" and old is not None:
                    return {"error": f"{key} already exists"}
                if op == "update" and old is None:
                    return {"error": f"{key} not found"}
                self.rv += 1
                if old is None:
                    md["uid"] = str(uuid.uuid4())
                    md["creationTimestamp"] = datetime.datetime.now(
                        datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                    md["generation"] = 1
                else:
                    md["uid"] = old["metadata"]["uid"]
                    md["creationTimestamp"] = old["metadata"]["creationTimestamp"]
                    md["generation"] = old["metadata"].get("generation", 1) + 1
                md["resourceVersion"] = str(self.rv)
                store[key] = obj
                etype = "ADDED" if old is None else "MODIFIED"
            if silent:
                # As if etcd compacted the event away: nobody can watch across it.
                self.compacted = self.rv
            else:
                self.record(path, etype, obj, old)
            return {"ok": True, "resourceVersion": str(self.rv)}

    def control(self, cmd):
        op = cmd.get("op")
        if op in ("create", "update", "delete"):
            return self.mutate(cmd)
        with self.lock:
            if op == "expire":
                self.compacted = self.rv
                for w in self.watchers:
                    w.queue.append(("gone",))
                self.lock.notify_all()
                return {"ok": True, "watchers": len(self.watchers)}
            if op == "gone_http":
                self.gone_http = cmd.get("count", 1)
                return {"ok": True}
            if op == "bookmark":
                self.rv += 1
                for w in self.watchers:
                    w.queue.append(("event", {"type": "BOOKMARK", "object": {
                        "kind": RESOURCES[w.path][0], "apiVersion": RESOURCES[w.path][1],
                        "metadata": {"resourceVersion": str(self.rv)}}}))
                self.lock.notify_all()
                return {"ok": True, "resourceVersion": str(self.rv), "watchers": len(self.watchers)}
            if op == "drop":
                n = len(self.watchers)
                for w in self.watchers:
                    w.queue.append(("drop",))
                self.lock.notify_all()
                return {"ok": True, "watchers": n}
            if op == "fail":
                self.fail_next = [cmd.get("status", 0)] * cmd.get("count", 1)
                return {"ok": True}
            if op == "set":
                if "chunk_size" in cmd:
                    self.chunk_size = cmd["chunk_size"]
                if "token" in cmd:
                    self.token = cmd["token"]
                if "expire_continue_after" in cmd:
                    self.expire_continue_after = cmd["expire_continue_after"]
                    self.pages_served = 0
                return {"ok": True}
            if op == "expire_continue":
                self.snapshots.clear()
                return {"ok": True}
            if op == "events":
                return {"ok": True, "events": list(self.events)}
            if op == "requests":
                return {"ok": True, "requests": list(self.requests)}
            if op == "clear_requests":
                self.requests.clear()
                return {"ok": True}
            if op == "watchers":
                return {"ok": True, "watchers": len(self.watchers)}
            if op == "state":
                return {"ok": True, "resourceVersion": str(self.rv),
                        "objects": {p: sorted(s) for p, s in self.objects.items() if s}}
        return {"error": f"unknown op {op}"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver"

    def log_message(self, fmt, *args):
        log(fmt % args)

    def send_json(self, code, obj):
        body = json.dumps(obj).encode() + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def send_status(self, code, reason, message):
        self.send_json(code, status_obj(code, reason, message))

    def do_GET(self):
        st = self.server.state
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        cert = self.connection.getpeercert()
        auth_header = self.headers.get("Authorization", "")
        auth = "cert" if cert else ("token" if auth_header.startswith("Bearer ") else "none")
        entry = {"path": url.path, "query": query, "auth": auth, "status": 0}
        with st.lock:
            st.requests.append(entry)
            fail = st.fail_next.pop(0) if st.fail_next else None
        if fail is not None:
            entry["status"] = fail
            if fail == 0:
                self.close_connection = True
                self.connection.close()
                return
            self.send_status(fail, "InternalError", "injected failure")
            return
        if st.token and not cert and auth_header != f"Bearer {st.token}":
            entry["status"] = 401
            self.send_status(401, "Unauthorized", "Unauthorized")
            return
        one = self.single_object_path(url.path)
        if one is not None:
            self.get_one(*one, entry)
            return
        if url.path not in RESOURCES:
            entry["status"] = 404
            self.send_status(404, "NotFound", "the server could not find the requested resource")
            return
        try:
            terms = parse_selector(query.get("fieldSelector", ""))
        except ValueError as e:
            entry["status"] = 400
            self.send_status(400, "BadRequest", str(e))
            return
        if query.get("watch") in ("true", "1"):
            self.watch(url.path, query, terms, entry)
        else:
            self.list(url.path, query, terms, entry)

    def do_POST(self):
        """Creates an Event: /api/v1/namespaces/NS/events (core/v1), checked as the API server
        checks the fields kdp sets; 201 with the object. Anything else: 405."""
        st = self.server.state
        url = urllib.parse.urlsplit(self.path)
        cert = self.connection.getpeercert()
        auth_header = self.headers.get("Authorization", "")
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        entry = {"path": url.path, "query": {}, "auth": "cert" if cert else "token",
                 "status": 0, "method": "POST"}
        with st.lock:
            st.requests.append(entry)
        if st.token and not cert and auth_header != f"Bearer {st.token}":
            entry["status"] = 401
            self.send_status(401, "Unauthorized", "Unauthorized")
            return
        parts = url.path.strip("/").split("/")
        if len(parts) != 5 or parts[:3] != ["api", "v1", "namespaces"] or parts[4] != "events":
            entry["status"] = 405
            self.send_status(405, "MethodNotAllowed", "POST is only served for events")
            return
        try:
            ev = json.loads(body)
        except ValueError as e:
            entry["status"] = 400
            self.send_status(400, "BadRequest", str(e))
            return
        problems = []
        if ev.get("kind") != "Event" or ev.get("apiVersion") != "v1":
            problems.append("kind/apiVersion must be Event/v1")
        md = ev.get("metadata", {})
        if md.get("namespace", parts[3]) != parts[3]:
            problems.append("metadata.namespace does not match the request's namespace")
        if not md.get("name") and not md.get("generateName"):
            problems.append("metadata.name or generateName required")
        inv = ev.get("involvedObject", {})
        if not inv.get("kind") or not inv.get("name"):
            problems.append("involvedObject.kind and .name required")
        if inv.get("namespace", "") not in ("", parts[3]):
            problems.append("involvedObject.namespace does not match the event's namespace")
        if ev.get("type") not in ("Normal", "Warning"):
            problems.append("type must be Normal or Warning")
        if not ev.get("reason") or not ev.get("message"):
            problems.append("reason and message required")
        if problems:
            entry["status"] = 422
            self.send_status(422, "Invalid", "; ".join(problems))
            return
        with st.lock:
            st.events.append(ev)
        entry["status"] = 201
        self.send_json(201, ev)

    @staticmethod
    def single_object_path(path):
        """(collection path, "ns/name") for /api/v1/namespaces/NS/RES/NAME and
        /apis/G/V/namespaces/NS/RES/NAME, else None."""
        parts = path.strip("/").split("/")
        base = 2 if parts[:1] == ["api"] else 3
        if len(parts) != base + 4 or parts[base] != "namespaces":
            return None
        collection = "/" + "/".join(parts[:base] + [parts[base + 2]])
        if collection not in RESOURCES or not RESOURCES[collection][2]:
            return None
        return collection, f"{parts[base + 1]}/{parts[base + 3]}"

    def get_one(self, path, key, entry):
        st = self.server.state
        kind, api_version, _ = RESOURCES[path]
        with st.lock:
            obj = copy.deepcopy(st.objects[path].get(key))
        if obj is None:
            entry["status"] = 404
            self.send_status(404, "NotFound", f'{kind.lower()}s "{key.split("/")[1]}" not found')
            return
        obj["kind"], obj["apiVersion"] = kind, api_version
        entry["status"] = 200
        self.send_json(200, obj)

    def list(self, path, query, terms, entry):
        st = self.server.state
        kind, api_version, _ = RESOURCES[path]
        limit = int(query.get("limit", "0") or 0)
        cont = query.get("continue", "")
        with st.lock:
            if cont and self.server.state.expire_continue_after > 0 and \
                    st.pages_served >= st.expire_continue_after:
                st.snapshots.clear()  # the list outlived the compaction window
            if cont:
                try:
                    token = json.loads(base64.b64decode(cont))
                    rv, items = st.snapshots[token["id"]]
                    start = token["start"]
                except (ValueError, KeyError):
                    entry["status"] = 410
                    self.send_status(410, "Expired", "The provided continue parameter is too old "
                                     "to display a consistent list result. You can start a new "
                                     "list without the continue parameter.")
                    return
            else:
                rv = st.rv
                items = [copy.deepcopy(o) for k, o in sorted(st.objects[path].items())
                         if matches(o, terms)]
                start = 0
                for it in items:  # list items carry no kind/apiVersion
                    it.pop("kind", None)
                    it.pop("apiVersion", None)
            st.pages_served += 1
            end = len(items) if limit <= 0 else min(len(items), start + limit)
            md = {"resourceVersion": str(rv)}
            if end < len(items):
                sid = str(uuid.uuid4())
                st.snapshots[sid] = (rv, items)
                md["continue"] = base64.b64encode(json.dumps(
                    {"v": "meta.k8s.io/v1", "rv": rv, "start": end, "id": sid}).encode()).decode()
                md["remainingItemCount"] = len(items) - end
        entry["status"] = 200
        self.send_json(200, {"kind": kind + "List", "apiVersion": api_version, "metadata": md,
                             "items": items[start:end]})

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
        self.wfile.flush()

    def watch(self, path, query, terms, entry):
        st = self.server.state
        timeout = int(query.get("timeoutSeconds", "0") or 0) or 1800
        rv_param = query.get("resourceVersion", "")
        w = Watcher(path, terms)
        with st.lock:
            if st.gone_http > 0:
                st.gone_http -= 1
                entry["status"] = 410
                self.send_status(410, "Expired", f"too old resource version: {rv_param}")
                return
            if rv_param in ("", "0"):
                for obj in sorted(st.objects[path].values(), key=key_of):
                    if matches(obj, terms):
                        w.queue.append(("event", {"type": "ADDED", "object": copy.deepcopy(obj)}))
            elif int(rv_param) < st.compacted:
                w.queue.append(("gone_rv", rv_param))
            else:
                for (rv, p, etype, obj, old) in st.history:
                    if p == path and rv > int(rv_param):
                        ev = State.event_for(terms, etype, obj, old)
                        if ev:
                            w.queue.append(("event", ev))
            st.watchers.add(w)
        entry["status"] = 200
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.flush()
            deadline = time.monotonic() + timeout
            while True:
                with st.lock:
                    while not w.queue and time.monotonic() < deadline:
                        st.lock.wait(deadline - time.monotonic())
                    items, w.queue = w.queue, []
                    chunk_size = st.chunk_size
                if not items:  # timeoutSeconds reached: end the body cleanly
                    self.wfile.write(b"0\r\n\r\n")
                    return
                for item in items:
                    if item[0] == "drop":
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if item[0] in ("gone", "gone_rv"):
                        msg = (f"too old resource version: {item[1]} ({st.compacted})"
                               if item[0] == "gone_rv" else "too old resource version")
                        self.write_chunk(json.dumps({"type": "ERROR", "object": status_obj(
                            410, "Expired", msg)}).encode() + b"\n")
                        self.wfile.write(b"0\r\n\r\n")
                        return
                    line = json.dumps(item[1]).encode() + b"\n"
                    if chunk_size > 0:
                        for i in range(0, len(line), chunk_size):
                            self.write_chunk(line[i:i + chunk_size])
                    else:
                        self.write_chunk(line)
        except OSError:
            pass
        finally:
            with st.lock:
                st.watchers.discard(w)
            self.close_connection = True


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr, ctx, state):
        self.ctx = ctx
        self.state = state
        super().__init__(addr, Handler)

    def finish_request(self, request, client_address):
        # The handshake runs on the connection's thread, so a client that rejects our
        # certificate does not stall the accept loop.
        try:
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log(f"TLS handshake from {client_address} failed: {e}")
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        log(f"connection from {client_address} ended with {sys.exc_info()[1]!r}")


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
            "-subj", f"/CN=kdp-test-{name}", cwd=d)


def make_leaf(d, name, ca, subject, ext):
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(ext)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
            cwd=d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True,
                    help="where to write (or find, if complete) the test CA and certificates")
    ap.add_argument("--token", default="", help="bearer token required (empty: no auth)")
    ap.add_argument("--server-san", default="IP:127.0.0.1,DNS:localhost")
    args = ap.parse_args()
    d = args.dir
    os.makedirs(d, exist_ok=True)
    # A directory that already holds a complete set is reused: key generation is most of the
    # start-up time, and a test binary starts many servers.
    names = ["ca", "client-ca", "wrong-ca", "server", "client"]
    if not all(os.path.exists(os.path.join(d, f"{n}.{x}")) for n in names for x in ("crt", "key")):
        make_ca(d, "ca")
        make_ca(d, "client-ca")
        make_ca(d, "wrong-ca")
        make_leaf(d, "server", "ca", "/CN=kube-apiserver",
                  f"subjectAltName={args.server_san}\nextendedKeyUsage=serverAuth\n"
                  "basicConstraints=CA:FALSE\n")
        make_leaf(d, "client", "client-ca", "/O=system:masters/CN=kdp-test",
                  "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "server.crt"), os.path.join(d, "server.key"))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(os.path.join(d, "client-ca.crt"))

    state = State(args.token)
    server = Server(("127.0.0.1", 0), ctx, state)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"port": server.server_address[1], "dir": d,
                      "ca": os.path.join(d, "ca.crt"),
                      "client_cert": os.path.join(d, "client.crt"),
                      "client_key": os.path.join(d, "client.key"),
                      "wrong_ca": os.path.join(d, "wrong-ca.crt")}), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            reply = state.control(json.loads(line))
        except Exception as e:  # a bad command must not kill the server mid-test
            reply = {"error": repr(e)}
        print(json.dumps(reply), flush=True)
    # Stdin closed: the test is done with us. Open watches are daemon threads; no need to wait
    # for serve_forever's poll interval.
    os._exit(0)


if __name__ == "__main__":
    main()
