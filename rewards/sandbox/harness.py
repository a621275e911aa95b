# r1 sandbox harness: runs inside bubblewrap as `python3 -I -S -B /sandbox/harness.py MODE ...`.
# It reports to the host on fd 3, one record per line:
#   start                      the interpreter is up (written before any untrusted code runs)
#   plan N                     N test units (before any untrusted code runs; the host keeps the first)
#   pass NONCE I               unit I passed; NONCE is read once from fd 4, then fd 4 is closed
#   fail I KIND MESSAGE        unit I failed (KIND: assert, error, memory, recursion, exit, type)
#   abort KIND MESSAGE         the solution could not be loaded or the test setup failed
#   done NONCE                 every unit ran
# The host scores only `pass` records that carry the nonce, so printing results, exiting early
# or writing fd 3 cannot fake a pass. Before untrusted code runs, an audit hook (which cannot be
# removed) closes the introspection routes to the nonce: frames (sys._getframe, tracebacks,
# generator/coroutine frames, trace and profile hooks), the garbage collector's object lists,
# ctypes, and signal handlers (whose second argument is a frame). There is no /proc.
#
# MODE "script": run /sandbox/solution.py as a program (stdin/stdout tests; the host compares).
# MODE "tests ENTRY": define /sandbox/solution.py, then run the assert-based /sandbox/test.py:
#   HumanEval style (a `def check(candidate)` called with the function ENTRY) or MBPP style (top-
#   level asserts). Every statement of the check body (or of the module) that contains an assert is
#   one unit; the others are setup. Units run in order; a failing unit does not stop the others.
import sys
import os


def _harness():
    write, close, read, _exit = os.write, os.close, os.read, os._exit
    BaseExc, AssertErr, MemErr, RecErr, SysExit = (BaseException, AssertionError, MemoryError,
                                                   RecursionError, SystemExit)
    _type, _str, _len, _repr = type, str, len, repr

    def send(text):
        data = text.encode("utf-8", "replace")
        while data:
            try:
                n = write(3, data)
            except OSError:
                return
            data = data[n:]

    def one_line(text, limit=300):
        text = text.replace("\n", " ").replace("\r", " ")
        return text[:limit]

    send("start\n")
    mode = sys.argv[1] if _len(sys.argv) > 1 else "script"
    with open("/sandbox/solution.py", encoding="utf-8", errors="replace") as f:
        solution = f.read()

    if mode == "script":
        sys.argv = ["solution.py"] + sys.argv[2:]
        try:
            code = compile(solution, "solution.py", "exec")
        except SyntaxError as e:
            send("abort syntax " + one_line(_repr(e)) + "\n")
            raise
        g = {"__name__": "__main__", "__builtins__": __builtins__}
        try:
            exec(code, g)
        except MemErr:
            send("abort memory MemoryError\n")
            raise
        return

    import _ast as ast  # the C module: `ast` itself costs ~5 ms of imports per run
    import builtins

    entry = sys.argv[2] if _len(sys.argv) > 2 else ""
    nonce = read(4, 256).decode("ascii", "replace").strip()
    close(4)
    with open("/sandbox/test.py", encoding="utf-8", errors="replace") as f:
        test_src = f.read()

    # ---- Split the test code into units (trusted input, parsed before untrusted code runs). ----
    try:
        tree = compile(test_src, "test.py", "exec", ast.PyCF_ONLY_AST)
    except SyntaxError as e:
        send("plan 0\nabort badtest " + one_line(_repr(e)) + "\n")
        _exit(2)
    check_def = None
    setup_stmts = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check" and check_def is None:
            check_def = node
        else:
            setup_stmts.append(node)
    if check_def is not None:
        body = check_def.body
    else:
        body, setup_stmts = setup_stmts, []

    def has_assert(node):
        if isinstance(node, ast.Assert):
            return True
        for name in node._fields:
            v = getattr(node, name, None)
            for child in (v if isinstance(v, list) else (v,)):
                if isinstance(child, ast.AST) and has_assert(child):
                    return True
        return False

    def located(node, src):
        # Gives a new node (and its new children) the source position of `src`.
        for name in node._fields:
            v = getattr(node, name, None)
            for child in (v if isinstance(v, list) else (v,)):
                if isinstance(child, ast.AST) and not hasattr(child, "lineno") and child is not src:
                    located(child, src)
        if "lineno" in node._attributes and not hasattr(node, "lineno"):
            node.lineno, node.col_offset = src.lineno, src.col_offset
            node.end_lineno, node.end_col_offset = src.end_lineno, src.end_col_offset
        return node

    units = 0
    new_body = []
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
    params = ["__r1_pass", "__r1_fail", "__r1_BaseException"]
    if check_def is not None:
        runner = ast.FunctionDef(name="check", args=check_def.args, body=new_body, decorator_list=[],
                                 returns=None, type_comment=None)
    else:
        runner = ast.FunctionDef(name="check", args=ast.arguments(posonlyargs=[], args=[], vararg=None,
                                 kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[]),
                                 body=new_body, decorator_list=[], returns=None, type_comment=None)
    factory = ast.FunctionDef(
        name="__r1_factory",
        args=ast.arguments(posonlyargs=[], args=[ast.arg(p) for p in params], vararg=None, kwonlyargs=[],
                           kw_defaults=[], kwarg=None, defaults=[]),
        body=[runner, ast.Return(ast.Name("check", ast.Load()))], decorator_list=[], returns=None,
        type_comment=None)
    anchor = ast.Pass(lineno=1, col_offset=0, end_lineno=1, end_col_offset=0)
    factory_code = compile(ast.Module([located(factory, anchor)], []), "test.py", "exec")
    setup_code = compile(ast.Module(setup_stmts, []), "test.py", "exec")
    send("plan %d\n" % units)

    plain_values = "--plain-values" in sys.argv
    reported = set()

    def passed(i):
        if i not in reported:
            reported.add(i)
            send("pass %s %d\n" % (nonce, i))

    def failed(i, e):
        if i in reported:
            return
        reported.add(i)
        kind = ("assert" if isinstance(e, AssertErr) else "memory" if isinstance(e, MemErr) else
                "recursion" if isinstance(e, RecErr) else "exit" if isinstance(e, SysExit) else
                "type" if isinstance(e, _PlainValueError) else "error")
        try:
            msg = _type(e).__name__ + ": " + _str(e)
        except BaseExc:
            msg = "unprintable exception"
        send("fail %d %s %s\n" % (i, kind, one_line(msg)))

    # ---- Lock down before untrusted code runs. ----
    # `types` reads a traceback's frame when imported: load it before the hook would refuse.
    # (Other stdlib users of sys._getframe fall back on the ValueError the hook raises.)
    import types  # noqa: F401
    for name in ("signal", "_signal"):
        sys.modules.pop(name, None)
    blocked_events = {"sys._current_frames", "sys.settrace", "sys.setprofile", "gc.get_objects",
                      "gc.get_referrers", "gc.get_referents", "ctypes.dlopen", "ctypes.dlsym",
                      "ctypes.addressof", "ctypes.cdata", "ctypes.string_at", "ctypes.wstring_at"}
    frame_attrs = {"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back", "f_locals", "f_globals"}
    blocked_imports = {"ctypes", "_ctypes", "signal", "_signal", "faulthandler", "_tracemalloc"}

    def audit(event, args):
        if event == "sys._getframe":
            raise ValueError("call stack is not inspectable in the r1 sandbox")  # stdlib falls back
        if event == "object.__getattr__" and _len(args) > 1 and args[1] in frame_attrs:
            raise AttributeError("frames are not inspectable in the r1 sandbox")
        if event in blocked_events:
            raise RuntimeError(event + " is not allowed in the r1 sandbox")
        if event == "import" and args and args[0] in blocked_imports:
            raise ImportError("module " + _str(args[0]) + " is not available in the r1 sandbox")

    sys.addaudithook(audit)
    pristine = dict(builtins.__dict__)

    class _PlainValueError(TypeError):
        pass

    plain_scalars = (int, float, complex, str, bytes, bool, type(None))

    def check_plain(v, depth):
        t = _type(v)
        if t in plain_scalars:
            return
        if depth > 50:
            raise _PlainValueError("candidate returned a value nested deeper than 50 levels")
        if t is list or t is tuple or t is set or t is frozenset:
            for x in v:
                check_plain(x, depth + 1)
            return
        if t is dict:
            for k, x in v.items():
                check_plain(k, depth + 1)
                check_plain(x, depth + 1)
            return
        raise _PlainValueError("candidate returned a %s, not a plain built-in value" % t.__name__)

    # ---- Untrusted: define the solution. ----
    g = {"__name__": "__solution__", "__builtins__": builtins}
    try:
        exec(compile(solution, "solution.py", "exec"), g)
    except BaseExc as e:
        kind = "memory" if isinstance(e, MemErr) else "exit" if isinstance(e, SysExit) else "error"
        try:
            msg = _type(e).__name__ + ": " + _str(e)
        except BaseExc:
            msg = "unprintable exception"
        send("abort %s %s\n" % (kind, one_line(msg)))
        _exit(1)

    # Undo changes to the builtins module; the tests get their own pristine copy and their own
    # globals (the solution's names, so helpers from the prompt stay visible).
    builtins.__dict__.clear()
    builtins.__dict__.update(pristine)
    t = dict(g)
    t["__builtins__"] = dict(pristine)
    t["__name__"] = "__test__"
    try:
        exec(setup_code, t)
    except BaseExc as e:
        send("abort setup %s\n" % one_line(_type(e).__name__ + ": " + _str(e)))
        _exit(1)
    exec(factory_code, t)
    make = t.pop("__r1_factory")
    check = make(passed, failed, BaseExc)
    if check_def is not None:
        if entry not in t:
            send("abort error NameError: entry point %s is not defined\n" % one_line(entry, 100))
            _exit(1)
        candidate = t[entry]
        if plain_values:
            target = candidate

            def candidate(*args, **kwargs):
                value = target(*args, **kwargs)
                check_plain(value, 0)
                return value
        check(candidate)
    else:
        check()
    send("done %s\n" % nonce)
    try:
        sys.stdout.flush()
    except BaseExc:
        pass
    _exit(0)


_harness()
