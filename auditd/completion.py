"""Shell completion, generated from the CLI's own parser (so it never drifts from it): every
command, subcommand, flag, and the choices of flags that have them (`-o`, `--log-level`)."""

from __future__ import annotations

import argparse
import shlex


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:  # argparse exposes no public walk of its tree
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flags(p: argparse.ArgumentParser) -> list[str]:
    return sorted(
        o for a in p._actions for o in a.option_strings if o.startswith("--") or len(o) == 2
    )


def _choices(p: argparse.ArgumentParser) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for a in p._actions:
        choices = a.choices
        if a.option_strings and choices and not isinstance(a, argparse._SubParsersAction):
            for o in a.option_strings:
                out[o] = [str(c) for c in choices]
    return out


def _tree(parser: argparse.ArgumentParser) -> dict[str, tuple[list[str], dict[str, list[str]]]]:
    """'' and every 'command' and 'command sub' -> (words to complete next, flag -> choices)."""
    out: dict[str, tuple[list[str], dict[str, list[str]]]] = {}

    def walk(path: str, p: argparse.ArgumentParser) -> None:
        subs = _subparsers(p)
        positional = [
            str(c)
            for a in p._actions
            if not a.option_strings and a.choices and not isinstance(a, argparse._SubParsersAction)
            for c in a.choices
        ]
        out[path] = (sorted(subs) + positional + _flags(p), _choices(p))
        for name, child in subs.items():
            walk(f"{path} {name}".strip(), child)

    walk("", parser)
    return out


def bash(parser: argparse.ArgumentParser) -> str:
    """A bash completion function: `source <(auditd completion bash)`."""
    tree = _tree(parser)
    cases = []
    for path, (words, choices) in sorted(tree.items()):
        flag_cases = "".join(
            f'        {shlex.quote(flag)}) COMPREPLY=($(compgen -W {shlex.quote(" ".join(c))} -- "$cur")); return;;\n'
            for flag, c in sorted(choices.items())
        )
        cases.append(
            f"    {shlex.quote(path)})\n"
            f'      case "$prev" in\n{flag_cases}      esac\n'
            f'      COMPREPLY=($(compgen -W {shlex.quote(" ".join(words))} -- "$cur"));;\n'
        )
    return (
        "# auditd bash completion: source <(auditd completion bash)\n"
        "_auditd() {\n"
        '  local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" path="" w\n'
        '  for w in "${COMP_WORDS[@]:1:COMP_CWORD-1}"; do\n'
        '    case "$w" in -*) ;; *) case " $(_auditd_next "$path") " in *" $w "*) '
        'path="${path:+$path }$w";; esac;; esac\n'
        "  done\n"
        '  case "$path" in\n' + "".join(cases) + "  esac\n"
        "}\n"
        "_auditd_next() {\n"
        '  case "$1" in\n'
        + "".join(
            f"    {shlex.quote(path)}) echo {shlex.quote(' '.join(w for w in words if not w.startswith('-')))};;\n"
            for path, (words, _) in sorted(tree.items())
        )
        + "  esac\n"
        "}\n"
        "complete -F _auditd auditd\n"
    )


def zsh(parser: argparse.ArgumentParser) -> str:
    """zsh through its bash compatibility: `source <(auditd completion zsh)`."""
    return "autoload -U +X bashcompinit && bashcompinit\n" + bash(parser)
