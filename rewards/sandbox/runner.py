# r1 sandbox runner: the process the untrusted solution runs in, started by harness.py as
# `python3 -I -S -B /sandbox/runner.py REQ_FD RESP_FD`. It holds nothing a verdict could be forged
# from: no channel to the host, no nonce, no test code (the harness keeps those in another process
# that this one cannot trace or read: no /proc, and a seccomp filter denies ptrace and
# process_vm_readv/writev). It defines the solution, reports its names, then answers calls:
#   harness -> runner   {"call": NAME, "args": [...], "kwargs": [[k, v], ...]}   (encoded values)
#   runner -> harness   {"value": V} | {"raise": EXCEPTION_NAME, "message": TEXT}
# Each message is an 8-byte little-endian length and that much UTF-8 JSON. Values cross as plain
# built-in data only (None, bool, int, float, complex, str, bytes, list, tuple, set, frozenset,
# dict, of exactly those types), so an object whose __eq__ always says True, or a subclass of int,
# cannot reach the tests: the harness compares what was encoded. The solution can replace any of
# this process's code; all it can then send is values, and values are only compared.
import sys
import os


def _run():
    import json
    import base64

    req_fd, resp_fd = int(sys.argv[1]), int(sys.argv[2])
    read, write, _exit, _type = os.read, os.write, os._exit, type

    def recv():
        head = b""
        while len(head) < 8:
            chunk = read(req_fd, 8 - len(head))
            if not chunk:
                _exit(0)  # the harness is done
            head += chunk
        n = int.from_bytes(head, "little")
        body = bytearray()
        while len(body) < n:
            chunk = read(req_fd, min(1 << 20, n - len(body)))
            if not chunk:
                _exit(0)
            body += chunk
        return json.loads(body.decode("utf-8"))

    def send(obj):
        data = json.dumps(obj, ensure_ascii=True).encode("ascii")
        data = len(data).to_bytes(8, "little") + data
        while data:
            n = write(resp_fd, data)
            data = data[n:]

    class NotPlain(TypeError):
        pass

    def encode(v, depth=0):
        t = _type(v)
        if depth > 100:
            raise NotPlain("the value is nested deeper than 100 levels")
        if v is None:
            return ["N"]
        if t is bool:
            return ["b", v]
        if t is int:
            return ["i", str(v)]
        if t is float:
            return ["f", v.hex()]
        if t is complex:
            return ["c", v.real.hex(), v.imag.hex()]
        if t is str:
            return ["s", v]
        if t is bytes:
            return ["y", base64.b64encode(v).decode("ascii")]
        if t is list or t is tuple or t is set or t is frozenset:
            tag = {list: "l", tuple: "t", set: "S", frozenset: "F"}[t]
            return [tag, [encode(x, depth + 1) for x in v]]
        if t is dict:
            return ["d", [[encode(k, depth + 1), encode(x, depth + 1)] for k, x in v.items()]]
        raise NotPlain("a %s is not a plain built-in value" % t.__name__)

    def decode(e):
        tag = e[0]
        if tag == "N":
            return None
        if tag == "b":
            return bool(e[1])
        if tag == "i":
            return int(e[1])
        if tag == "f":
            return float.fromhex(e[1])
        if tag == "c":
            return complex(float.fromhex(e[1]), float.fromhex(e[2]))
        if tag == "s":
            return str(e[1])
        if tag == "y":
            return base64.b64decode(e[1])
        if tag in ("l", "t", "S", "F"):
            items = [decode(x) for x in e[1]]
            return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
        if tag == "d":
            return {decode(k): decode(x) for k, x in e[1]}
        raise ValueError("bad value tag %r" % (tag,))

    def failure(e):
        try:
            message = str(e)
        except BaseException:
            message = "unprintable exception"
        return {"raise": _type(e).__name__, "message": message[:2000]}

    # ---- Untrusted from here on: define the solution. ----
    with open("/sandbox/solution.py", encoding="utf-8", errors="replace") as f:
        solution = f.read()
    g = {"__name__": "__solution__"}
    try:
        exec(compile(solution, "solution.py", "exec"), g)
    except BaseException as e:
        send({"loaded": False, **failure(e)})
        _exit(1)
    names, modules = [], {}
    for k, v in list(g.items()):
        if k.startswith("__"):
            continue
        if _type(v).__name__ == "module":
            modules[k] = getattr(v, "__name__", k)
        elif callable(v):
            names.append(k)
    send({"loaded": True, "names": names, "modules": modules})
    while True:
        req = recv()
        try:
            fn = g[req["call"]]
            args = [decode(a) for a in req["args"]]
            kwargs = {k: decode(v) for k, v in req["kwargs"]}
            out = {"value": encode(fn(*args, **kwargs))}
        except BaseException as e:
            out = failure(e)
        send(out)


_run()
