"""Every public function and class has a numpydoc docstring: its parameters, its return value
and, for the optimizers and the gradient estimators, the paper's equation it implements.

What "public" means here (the rule, also stated in docs/index.rst):

- a module is public when no component of its dotted name starts with "_"
  (``refbinn.optim.bayesbinn`` is, ``refbinn.optim._bayesbinn_math`` is not);
  packages count, so everything an ``__init__`` re-exports is public;
- an object is public when a public module's namespace holds it under a name
  without a leading underscore and refbinn defines it: functions, classes, Numba
  kernels (dispatchers and intrinsics). A function from a private module
  re-exported by a public one is public. Each object is checked once, under the
  first public name found (modules in sorted order);
- of a public class, the methods and properties that the class itself defines
  without a leading underscore are public too (dunder methods are not).

What is checked, per object:

- a docstring (an override without one inherits its base's, as ``help`` shows; an
  override's parameters and return value may be documented in the base method);
- every parameter of the signature is named in a ``Parameters`` (or ``Other
  Parameters``) section, ``a, b : int`` naming both; for a class, the parameters
  of its constructor (or a NamedTuple's fields, also under ``Attributes``);
  ``self``/``cls`` and a Numba intrinsic's ``typingctx`` are exempt;
- a ``Returns`` (or ``Yields``) section when the function's body returns a value;
- a ``References`` line naming an equation, algorithm, lemma, section or table, for
  the optimizer classes exported by ``refbinn.optim`` and the estimators in
  ``ESTIMATORS``.

Every public name must be complete: the test lists each one that is not, with what
it lacks.
"""
import ast
import importlib
import inspect
import pkgutil
import re
import textwrap
from pathlib import Path

import refbinn

ESTIMATORS = ("lemma1", "reinforce", "exact_gradient", "exact_expected_loss", "relaxed_objective",
              "relaxed_objective_grad")
NO_EQUATION = ("Partition",)        # routes parameters to two optimizers; implements no equation
EQUATION = re.compile(r"References?\b.*?\b(eq\.|eqs?\b|equations?|algorithm|lemma|section|table|"
                      r"figure|appendix)", re.I | re.S)
SECTION = re.compile(r"^[ \t]*([A-Z][A-Za-z ]+)\n[ \t]*-{3,}[ \t]*$", re.M)


def public_modules():
    names = ["refbinn"]
    for info in pkgutil.walk_packages(refbinn.__path__, "refbinn."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _kind(obj):
    if inspect.isclass(obj):
        return "class"
    if inspect.isfunction(obj):
        return "function"
    if hasattr(obj, "py_func"):                  # numba.njit dispatcher
        return "function"
    if hasattr(obj, "_defn"):                    # numba.extending.intrinsic
        return "intrinsic"
    return None


def _python_function(obj):
    """The Python function behind a Numba kernel (or the function itself)."""
    return getattr(obj, "py_func", None) or getattr(obj, "_defn", None) or obj


def _defining_module(obj):
    return getattr(_python_function(obj), "__module__", None) or ""


def public_objects():
    """(qualified public name, kind, object, owning class or None), each object once.

    The name is the one in the defining module when that module is public (where a fix
    goes), else the first public name found.
    """
    found = {}
    modules = public_modules()
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name, obj in sorted(vars(module).items()):
            kind = _kind(obj)
            if name.startswith("_") or kind is None or not _defining_module(obj).startswith("refbinn"):
                continue
            home = _defining_module(obj) == module_name
            if id(obj) not in found or (home and not found[id(obj)][2]):
                found[id(obj)] = (f"{module_name}.{name}", kind, home, obj)
    out = []
    for qualname, kind, _, obj in sorted(found.values(), key=lambda t: t[0]):
        out.append((qualname, kind, obj, None))
        if kind == "class":
            out.extend(_public_members(qualname, obj))
    return out


def _public_members(qualname, cls):
    out = []
    for name, attr in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if isinstance(attr, property):
            out.append((f"{qualname}.{name}", "property", attr, cls))
        elif inspect.isfunction(attr) and attr.__module__.startswith("refbinn"):
            out.append((f"{qualname}.{name}", "method", attr, cls))
    return out


def _docstring(obj, kind, owner):
    if kind == "method":
        return inspect.getdoc(getattr(owner, obj.__name__)) or ""     # inherits a base's docstring
    return inspect.cleandoc(_python_function(obj).__doc__ or "")


def _sections(doc):
    """Section title -> its text (numpydoc: a title underlined by dashes)."""
    marks = list(SECTION.finditer(doc))
    return {m.group(1).strip(): doc[m.end():marks[i + 1].start() if i + 1 < len(marks) else len(doc)]
            for i, m in enumerate(marks)}


def _documented_names(text):
    """Names on numpydoc entry lines: ``a, b : type`` or a bare ``a`` at the section's indentation."""
    text = textwrap.dedent(text.strip("\n"))
    names = set()
    for line in text.splitlines():
        if line[:1].strip() and not line.startswith("-"):
            head = line.split(" : ")[0].rstrip(":")
            names.update(n.strip().lstrip("*") for n in head.split(","))
    return names


def _parameters(obj, kind, owner):
    if kind == "class":
        fields = getattr(obj, "_fields", None)
        if fields is not None:                    # NamedTuple
            return list(fields)
        if "__init__" not in vars(obj) and not any("__init__" in vars(b) for b in obj.__mro__[1:-1]
                                                   if b.__module__.startswith("refbinn")):
            return []
        func = obj.__init__
    else:
        func = _python_function(obj)
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return []
    skip = {"self", "cls"} | ({"typingctx"} if kind == "intrinsic" else set())
    return [p.name for p in params if p.name not in skip]


def _returns_value(obj, kind):
    if kind not in ("function", "method", "intrinsic"):
        return False
    func = _python_function(obj)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return False
    body = tree.body[0]
    if kind == "intrinsic":                      # an intrinsic returns (signature, codegen)
        return True

    def walk(node):                              # returns of this function, not of nested ones
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue
            if isinstance(child, ast.Return) and child.value is not None and not (
                    isinstance(child.value, ast.Constant) and child.value.value is None):
                yield child
            yield from walk(child)
    return any(True for _ in walk(body))


def _needs_equation(qualname, obj, kind):
    import refbinn.estimators as est
    import refbinn.optim as optim
    if kind == "class" and obj is not optim.Optimizer and issubclass(obj, optim.Optimizer) \
            and getattr(optim, obj.__name__, None) is obj and obj.__name__ not in NO_EQUATION:
        return True
    return kind == "function" and any(getattr(est, n, None) is obj for n in ESTIMATORS)


def problems(qualname, kind, obj, owner):
    """What the docstring of one public object lacks: a list of short phrases."""
    doc = _docstring(obj, kind, owner)
    if not doc.strip():
        return ["no docstring"]
    if kind == "property":
        return []
    found = []
    sections = set(_sections(doc))
    params = _parameters(obj, kind, owner)
    listed = set()
    # an override may leave its parameters and return value to the base method it implements
    docs = [doc] + ([inspect.getdoc(getattr(base, obj.__name__)) or "" for base in owner.__mro__[1:]
                     if obj.__name__ in vars(base)] if kind == "method" else [])
    for text in docs:
        parts = _sections(text)
        sections |= set(parts)
        for title in ("Parameters", "Other Parameters", "Attributes"):
            if title in parts and (title != "Attributes" or kind == "class"):
                listed |= _documented_names(parts[title])
    missing = [p for p in params if p not in listed]
    if missing:
        found.append("parameters " + ", ".join(missing))
    if _returns_value(obj, kind) and not ({"Returns", "Yields"} & sections):
        found.append("Returns")
    if _needs_equation(qualname, obj, kind) and not EQUATION.search(doc):
        found.append("References (paper equation)")
    return found


def gaps():
    out = {}
    for qualname, kind, obj, owner in public_objects():
        p = problems(qualname, kind, obj, owner)
        if p:
            out[qualname] = "; ".join(p)
    return out


def _listing(entries):
    return "\n".join(f"{k}: {v}" for k, v in sorted(entries.items()))


def test_rule_finds_the_public_api():
    names = {q for q, *_ in public_objects()}
    # re-exports, classes, methods and Numba kernels are all seen; private modules and names are not
    for expected in ("refbinn.nn.dense.Dense", "refbinn.nn.dense.Dense.forward",
                     "refbinn.data.toy.load_snelson", "refbinn.kernels.popcount.popcount",
                     "refbinn.kernels.philox.philox4x32_10",
                     "refbinn.optim.bayesbinn.BayesBiNN"):
        assert expected in names
    assert not any(part.startswith("_") for q in names for part in q.split("."))


def test_the_checker_catches_what_it_should():
    def undocumented(a, b):
        return a + b

    def documented(a, b):
        """a + b.

        Parameters
        ----------
        a, b : float

        Returns
        -------
        float
        """
        return a + b

    def half(a, b):
        """a + b.

        Parameters
        ----------
        a : float
        """
        return a + b

    assert problems("t.undocumented", "function", undocumented, None) == ["no docstring"]
    assert problems("t.documented", "function", documented, None) == []
    assert problems("t.half", "function", half, None) == ["parameters b", "Returns"]


def test_every_public_name_is_complete():
    bad = gaps()
    assert not bad, "public names whose docstrings lack something:\n" + _listing(bad)


def test_every_public_module_has_a_page_in_the_reference():
    # the top-level package only re-exports names that their own modules' pages document
    pages = Path(__file__).resolve().parent.parent / "docs" / "api"
    documented = set()
    for page in pages.glob("*.rst"):
        documented |= set(re.findall(r"^\.\. automodule:: (\S+)", page.read_text(), re.M))
    missing = [m for m in public_modules() if m != "refbinn" and m not in documented]
    assert not missing, f"public modules without an automodule in docs/api/*.rst: {missing}"
