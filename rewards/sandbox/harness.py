# r1 sandbox harness: runs inside bubblewrap as `python3 -I -S -B /sandbox/harness.py MODE ...`.
# It reports to the host on fd 3, one record per line:
#   start                      the interpreter is up
#   plan N                     N test units (the host keeps the first)
#   pass NONCE I               unit I passed
#   fail I KIND MESSAGE        unit I failed (KIND: assert, error, memory, recursion, exit, type, cpu)
#   abort KIND MESSAGE         the solution could not be loaded or the test setup failed
#   done NONCE                 every unit ran
# The host scores only `pass` records that carry the nonce.
#
# MODE "script": run /sandbox/solution.py as a program (stdin/stdout tests: the expected outputs
#   never enter the sandbox; the host compares).
# MODE "tests ENTRY": assert-based tests, HumanEval style (a `def check(candidate)` called with the
#   function ENTRY) or MBPP style (top-level asserts). Every statement of the check body (or of the
#   module) that contains an assert is one unit; the others are setup. Units run in order; a failing
#   unit does not stop the others. The nonce and the test code arrive on fd 4 (read once, then
#   closed), never as a file. The solution runs in another process (runner.py), started with only
#   its two call pipes: this process's memory, fd 3 and the tests are out of its reach (no /proc,
#   and the sandbox's seccomp filter denies ptrace and process_vm_readv/writev). The tests call
#   the solution's functions through proxies, and only plain built-in values cross (see runner.py).
import sys
import os


def _send(text):
    data = text.encode("utf-8", "replace")
    while data:
        try:
            n = os.write(3, data)
        except OSError:
            return
        data = data[n:]


def _one_line(text, limit=300):
    return text.replace("\n", " ").replace("\r", " ")[:limit]


def _describe(e):
    try:
        return type(e).__name__ + ": " + str(e)
    except BaseException:
        return "unprintable exception"


def _script():
    with open("/sandbox/solution.py", encoding="utf-8", errors="replace") as f:
        solution = f.read()
    sys.argv = ["solution.py"] + sys.argv[2:]
    try:
        code = compile(solution, "solution.py", "exec")
    except SyntaxError as e:
        _send("abort syntax " + _one_line(repr(e)) + "\n")
        raise
    g = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(code, g)
    except MemoryError:
        _send("abort memory MemoryError\n")
        raise


def _units(test_src):
    """The test code split into setup statements and a `check` whose assert statements each report
    their own pass or fail: (setup_code, factory_code, has_check_def, units)."""
    import _ast as ast  # the C module: `ast` itself costs ~5 ms of imports per run

    tree = compile(test_src, "test.py", "exec", ast.PyCF_ONLY_AST)
    check_def, setup_stmts = None, []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check" and check_def is None:
            check_def = node
        else:
            setup_stmts.append(node)
    body, setup_stmts = (check_def.body, setup_stmts) if check_def is not None else (setup_stmts, [])

    def has_assert(node):
        if isinstance(node, ast.Assert):
            return True
        for name in node._fields:
            v = getattr(node, name, None)
            for child in (v if isinstance(v, list) else (v,)):
                if isinstance(child, ast.AST) and has_assert(child):
                    return True
        return False

    def located(node, src):  # gives a new node (and its new children) the source position of `src`
        for name in node._fields:
            v = getattr(node, name, None)
            for child in (v if isinstance(v, list) else (v,)):
                if isinstance(child, ast.AST) and not hasattr(child, "lineno") and child is not src:
                    located(child, src)
        if "lineno" in node._attributes and not hasattr(node, "lineno"):
            node.lineno, node.col_offset = src.lineno, src.col_offset
            node.end_lineno, node.end_col_offset = src.end_lineno, src.end_col_offset
        return node

    units, new_body = 0, []
    for stmt in body:
        if not has_assert(stmt):
            new_body.append(stmt)
            continue
        # try: <stmt> / except BaseException as e: __r1_fail(i, e) / else: __r1_pass(i)
        i = ast.Constant(units)
        handler = ast.ExceptHandler(
            type=ast.Name("__r1_BaseException", ast.Load()), name="__r1_e",
            body=[ast.Expr(ast.Call(ast.Name("__r1_fail", ast.Load()), [i, ast.Name("__r1_e", ast.Load())], []))])
        new_body.append(located(ast.Try(body=[stmt], handlers=[handler],
                                        orelse=[ast.Expr(ast.Call(ast.Name("__r1_pass", ast.Load()), [i], []))],
                                        finalbody=[]), stmt))
        units += 1
    if not new_body:
        new_body = [ast.Pass(lineno=1, col_offset=0, end_lineno=1, end_col_offset=0)]
    no_args = ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None,
                            defaults=[])
    runner = ast.FunctionDef(name="check", args=check_def.args if check_def is not None else no_args,
                             body=new_body, decorator_list=[], returns=None, type_comment=None)
    params = ["__r1_pass", "__r1_fail", "__r1_BaseException"]
    factory = ast.FunctionDef(
        name="__r1_factory",
        args=ast.arguments(posonlyargs=[], args=[ast.arg(p) for p in params], vararg=None, kwonlyargs=[],
                           kw_defaults=[], kwarg=None, defaults=[]),
        body=[runner, ast.Return(ast.Name("check", ast.Load()))], decorator_list=[], returns=None,
        type_comment=None)
    anchor = ast.Pass(lineno=1, col_offset=0, end_lineno=1, end_col_offset=0)
    factory_code = compile(ast.Module([located(factory, anchor)], []), "test.py", "exec")
    setup_code = compile(ast.Module(setup_stmts, []), "test.py", "exec")
    return setup_code, factory_code, check_def is not None, units


class _Solution:
    """The solution's process and calls into it. Only plain built-in values cross, both ways."""

    class Died(Exception):
        pass

    class NotPlain(TypeError):
        pass

    def __init__(self):
        import json
        import base64
        import subprocess
        self.json, self.base64 = json, base64
        req_r, self.req_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        # A fresh interpreter (exec replaces this process's memory in the child) holding only its
        # two pipe ends: not fd 3 (the verdicts), not fd 4 (read and closed already).
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", "/sandbox/runner.py", str(req_r), str(resp_w)],
            pass_fds=(req_r, resp_w), close_fds=True, stdin=subprocess.DEVNULL)
        os.close(req_r)
        os.close(resp_w)
        self.hello = self._recv()

    def _recv(self):
        head = b""
        while len(head) < 8:
            chunk = os.read(self.resp_r, 8 - len(head))
            if not chunk:
                raise self.Died(self._ended())
            head += chunk
        n = int.from_bytes(head, "little")
        if n > (64 << 20):
            raise self.Died("the solution sent a message of %d bytes" % n)
        body = bytearray()
        while len(body) < n:
            chunk = os.read(self.resp_r, min(1 << 20, n - len(body)))
            if not chunk:
                raise self.Died(self._ended())
            body += chunk
        msg = self.json.loads(body.decode("utf-8"))
        if not isinstance(msg, dict):
            raise self.Died("the solution's process broke the call protocol")
        return msg

    def _ended(self):
        try:
            code = self.proc.wait(timeout=5)
        except Exception:
            code = None
        if code is not None and code < 0 and -code in (24, 9):  # SIGXCPU, or SIGKILL at the hard CPU limit
            _Solution.cpu = True
        return "the solution's process ended (%s)" % ("signal %d" % -code if code is not None and code < 0
                                                      else "exit %s" % code)

    cpu = False

    def encode(self, v, depth=0):
        t = type(v)
        if depth > 100:
            raise self.NotPlain("a test argument nested deeper than 100 levels")
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
            return ["y", self.base64.b64encode(v).decode("ascii")]
        if t in (list, tuple, set, frozenset):
            return [{list: "l", tuple: "t", set: "S", frozenset: "F"}[t], [self.encode(x, depth + 1) for x in v]]
        if t is dict:
            return ["d", [[self.encode(k, depth + 1), self.encode(x, depth + 1)] for k, x in v.items()]]
        raise self.NotPlain("a test passed a %s, which cannot cross to the solution's process" % t.__name__)

    def decode(self, e, depth=0):
        """A value from the untrusted side: only these tags, only these types, bounded depth."""
        if depth > 100 or not isinstance(e, list) or not e or not isinstance(e[0], str):
            raise self.NotPlain("the solution returned a malformed value")
        tag = e[0]
        if tag == "N":
            return None
        if tag == "b" and isinstance(e[1], bool):
            return e[1]
        if tag == "i" and isinstance(e[1], str) and len(e[1]) <= 10000:
            return int(e[1])
        if tag == "f" and isinstance(e[1], str):
            return float.fromhex(e[1])
        if tag == "c" and isinstance(e[1], str) and isinstance(e[2], str):
            return complex(float.fromhex(e[1]), float.fromhex(e[2]))
        if tag == "s" and isinstance(e[1], str):
            return e[1]
        if tag == "y" and isinstance(e[1], str):
            return self.base64.b64decode(e[1], validate=True)
        if tag in ("l", "t", "S", "F") and isinstance(e[1], list):
            return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](self.decode(x, depth + 1) for x in e[1])
        if tag == "d" and isinstance(e[1], list):
            return {self.decode(kv[0], depth + 1): self.decode(kv[1], depth + 1) for kv in e[1]}
        raise self.NotPlain("the solution returned a malformed value")

    def call(self, name, args, kwargs):
        req = {"call": name, "args": [self.encode(a) for a in args],
               "kwargs": [[k, self.encode(v)] for k, v in kwargs.items()]}
        data = self.json.dumps(req).encode("utf-8")
        data = len(data).to_bytes(8, "little") + data
        try:
            while data:
                n = os.write(self.req_w, data)
                data = data[n:]
        except OSError:
            raise self.Died(self._ended())
        msg = self._recv()
        if "value" in msg:
            return self.decode(msg["value"])
        raise self.reraised(msg)

    def reraised(self, msg):
        """The solution's exception as the tests see it: a built-in exception type by name (so that
        `except ValueError` in a test works), anything else as RuntimeError."""
        import builtins
        name, message = str(msg.get("raise", "Exception")), str(msg.get("message", ""))
        if name == "NotPlain":
            return self.NotPlain(message)
        t = getattr(builtins, name, None)
        if isinstance(t, type) and issubclass(t, BaseException):
            try:
                return t(message)
            except Exception:
                pass
        return RuntimeError(name + ": " + message)

    def proxy(self, name):
        def candidate(*args, **kwargs):
            return self.call(name, args, kwargs)
        candidate.__name__ = candidate.__qualname__ = name
        return candidate


def _tests():
    entry = sys.argv[2] if len(sys.argv) > 2 else ""
    secret = b""
    while True:
        chunk = os.read(4, 1 << 20)
        if not chunk:
            break
        secret += chunk
    os.close(4)
    nonce, _, test_src = secret.decode("utf-8", "replace").partition("\n")
    nonce = nonce.strip()
    try:
        setup_code, factory_code, has_check, units = _units(test_src)
    except SyntaxError as e:
        _send("plan 0\nabort badtest " + _one_line(repr(e)) + "\n")
        os._exit(2)
    _send("plan %d\n" % units)
    reported = set()
    try:
        sol = _Solution()
    except _Solution.Died as e:  # the solution's process died while loading (CPU limit, os._exit, ...)
        _send("abort %s %s\n" % ("cpu" if _Solution.cpu else "error", _one_line(str(e))))
        os._exit(1)

    def passed(i):
        if i not in reported:
            reported.add(i)
            _send("pass %s %d\n" % (nonce, i))

    def failed(i, e):
        if i in reported:
            return
        reported.add(i)
        kind = ("assert" if isinstance(e, AssertionError) else "memory" if isinstance(e, MemoryError) else
                "recursion" if isinstance(e, RecursionError) else "exit" if isinstance(e, SystemExit) else
                "type" if isinstance(e, _Solution.NotPlain) else
                "cpu" if isinstance(e, _Solution.Died) and _Solution.cpu else "error")
        _send("fail %d %s %s\n" % (i, kind, _one_line(_describe(e))))

    hello = sol.hello
    if not hello.get("loaded"):
        name = str(hello.get("raise", ""))
        kind = "memory" if name == "MemoryError" else "exit" if name == "SystemExit" else "error"
        _send("abort %s %s\n" % (kind, _one_line(name + ": " + str(hello.get("message", "")))))
        os._exit(1)
    # The tests' globals: a proxy for each function the solution defines (prompt helpers included)
    # except names of built-ins, which a solution could otherwise redefine under the tests' feet,
    # and the standard modules it imported, imported here anew.
    import builtins
    import importlib
    t = {"__name__": "__test__", "__builtins__": builtins}
    for name in hello.get("names", []):
        if isinstance(name, str) and name.isidentifier() and not hasattr(builtins, name):
            t[name] = sol.proxy(name)
    for alias, module in dict(hello.get("modules", {})).items():
        if isinstance(alias, str) and alias.isidentifier() and isinstance(module, str):
            try:
                t[alias] = importlib.import_module(module)
            except Exception:
                pass
    try:
        exec(setup_code, t)
    except BaseException as e:
        _send("abort setup %s\n" % _one_line(_describe(e)))
        os._exit(1)
    exec(factory_code, t)
    check = t.pop("__r1_factory")(passed, failed, BaseException)
    if has_check:
        if entry not in hello.get("names", []):
            _send("abort error NameError: entry point %s is not defined\n" % _one_line(entry, 100))
            os._exit(1)
        check(sol.proxy(entry))
    else:
        check()
    _send("done %s\n" % nonce)
    os._exit(0)


_send("start\n")
if (sys.argv[1] if len(sys.argv) > 1 else "script") == "script":
    _script()
else:
    _tests()
