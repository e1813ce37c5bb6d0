#!/usr/bin/env python3
"""Idle memory per connection with TLS on and off: N authenticated raw TCP
connections (length-prefixed protobuf Auth frames), over TLS and plaintext,
to a release gateway; the gateway's RSS before and after each set, per
connection. Writes bench-results/<date>-tls-memory/.

Usage: scripts/bench-tls-memory.py [N]   (default 5000)
"""
import base64, hashlib, hmac, json, os, socket, ssl, subprocess, sys, tempfile, time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GATEWAY = os.environ.get("GATEWAY", os.path.join(ROOT, "target/release/gateway"))
SECRET = "bench-tls-secret"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def token(user):
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": user, "exp": int(time.time()) + 3600}).encode())
    sig = b64(hmac.new(SECRET.encode(), head + b"." + body, hashlib.sha256).digest())
    return (head + b"." + body + b"." + sig).decode()


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def auth_frame(tok):
    t = tok.encode()
    auth = b"\x0a" + varint(len(t)) + t
    frame = b"\x0a" + varint(len(auth)) + auth
    return len(frame).to_bytes(4, "big") + frame


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start(args):
    p = subprocess.Popen([GATEWAY, "--ws-listen", "127.0.0.1:0", "--tcp-listen", "127.0.0.1:0",
                          "--admin-listen", "127.0.0.1:0", "--shards", "2", "--jwt-secret", SECRET] + args,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    tcp = dict(w.split("=", 1) for w in line.split()[1:])["tcp"]
    host, port = tcp.rsplit(":", 1)
    return p, (host, int(port))


def run(tls_ctx, args, label):
    p, addr = start(args)
    time.sleep(0.5)
    before = rss_kib(p.pid)
    conns = []
    for i in range(N):
        s = socket.create_connection(addr)
        if tls_ctx:
            s = tls_ctx.wrap_socket(s, server_hostname="localhost")
        s.sendall(auth_frame(token(f"u{i}")))
        head = s.recv(4)
        assert len(head) == 4, label
        n = int.from_bytes(head, "big")
        while n > 0:
            n -= len(s.recv(n))
        conns.append(s)
    time.sleep(3)
    after = rss_kib(p.pid)
    for s in conns:
        s.close()
    p.terminate()
    p.wait()
    return {"label": label, "conns": N, "rss_before_kib": before, "rss_after_kib": after,
            "bytes_per_conn": round((after - before) * 1024 / N)}


def main():
    d = tempfile.mkdtemp()
    cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-addext", "basicConstraints=critical,CA:FALSE", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    ctx = ssl.create_default_context(cafile=cert)
    results = [run(None, [], "plaintext"), run(ctx, ["--tls-cert", cert, "--tls-key", key], "tls")]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = os.path.join(ROOT, "bench-results", f"{stamp}-tls-memory")
    os.makedirs(out)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
    machine = {"nproc": os.cpu_count(), "kernel": os.uname().release, "commit": commit + ("-dirty" if dirty else ""),
               "command": f"scripts/bench-tls-memory.py {N}"}
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump({"machine": machine, "results": results}, f, indent=2)
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(f"# Idle memory per connection, TLS on and off\n\n- machine: {machine['nproc']} CPUs, kernel {machine['kernel']}; commit {machine['commit']}\n")
        f.write(f"- command: `{machine['command']}` (release gateway, 2 shards, raw TCP, authenticated, idle; RSS 3 s after the last connect)\n\n")
        f.write("| transport | connections | RSS before | RSS after | bytes per connection |\n| --- | --- | --- | --- | --- |\n")
        for r in results:
            f.write(f"| {r['label']} | {r['conns']:,} | {r['rss_before_kib']:,} KiB | {r['rss_after_kib']:,} KiB | **{r['bytes_per_conn']:,}** |\n")
    print(out)
    for r in results:
        print(r)


main()
