"""Code lines of the .py files under a folder at a git revision: lines holding code, not
blank, comment or docstring lines (the measure issue 19's "net lines of code" is read by).

    python scripts/sloc.py [REV] [FOLDER] [-v]      # defaults: HEAD tasks
"""

import ast
import io
import subprocess
import sys
import tokenize

NOT_CODE = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENDMARKER, tokenize.ENCODING}  # fmt: skip


def docstring_lines(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    found.update(range(first.lineno, first.end_lineno + 1))
    return found


def code_lines(source: str) -> int:
    docs = docstring_lines(ast.parse(source))
    lines = set()
    for tok in tokenize.tokenize(io.BytesIO(source.encode()).readline):
        if tok.type not in NOT_CODE:
            lines.update(n for n in range(tok.start[0], tok.end[0] + 1) if n not in docs)
    return len(lines)


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "-v"]
    rev, folder = (args + ["HEAD", "tasks"][len(args) :])[:2]
    counts = {
        path: code_lines(git("show", f"{rev}:{path}"))
        for path in git("ls-tree", "-r", "--name-only", rev, folder).split()
        if path.endswith(".py")
    }
    if "-v" in sys.argv:
        for path, n in sorted(counts.items(), key=lambda kv: kv[1]):
            print(f"{n:6d} {path}")
    print(f"{sum(counts.values())} code lines in {folder}/ at {rev}")


if __name__ == "__main__":
    main()
