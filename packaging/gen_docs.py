#!/usr/bin/env python3
"""Man pages, bash completion and the example usmc.conf, from one source each.

usmc(1) and usmc-SUB(1) and the completion come from the built command's own
`usmc [SUB] --help` (the CLI definition, CLI11), usmc.conf(5) and the example
file from docs/config.md. Nothing is written down a second time, so nothing
drifts: change the help text or the doc and the pages follow at the next build.

  gen_docs.py --usmc build/tools/usmc --config-md docs/config.md \
      --version 0.1.0 --subcommands "run setup ..." --out DIR
  gen_docs.py --options-of-help FILE   (for the test: the options a help
                                        text or a rendered page names)
"""
import argparse
import gzip
import os
import re
import subprocess
import sys

DESC_COL = 30  # CLI11's name column: a longer name puts its text on the next line


def run_help(usmc, sub):
    args = [usmc] + ([sub] if sub else []) + ["--help"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    # The usage line names the binary as invoked; the pages name it "usmc".
    return re.sub(r"^Usage: \S*usmc", "Usage: usmc", out, flags=re.M)


def parse_help(text):
    """CLI11 help (or usmc run's own, written in the same shape) ->
    {description, usage, sections: {title: [(name, text)]}, prose}."""
    lines = text.rstrip("\n").split("\n")
    h = {"description": "", "usage": "", "sections": {}, "prose": []}
    section = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("Usage: "):
            h["usage"] = line[len("Usage: "):].strip()
        elif re.match(r"^[A-Z][A-Za-z ]*:$", line):
            section = line[:-1]
            h["sections"][section] = []
        elif section and line.startswith("  ") and line.strip():
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if nxt.startswith(" " * DESC_COL) and nxt.strip():
                name, desc = line.strip(), nxt.strip()
                i += 1
            else:
                name, desc = line[:DESC_COL].strip(), line[DESC_COL:].strip()
            h["sections"][section].append((name, desc))
        elif not line.strip():
            section = None
        elif not h["usage"] and not h["description"]:
            h["description"] = line.strip()
        else:
            h["prose"].append(line.strip())
        i += 1
    return h


def option_names(text):
    """Every -x / --long option an (unformatted) help text or page names."""
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", text))


def declared_options(h):
    names = set()
    for sec in ("Options",):
        for name, _ in h["sections"].get(sec, []):
            spec = name.split(" ")[0]
            names.update(n for n in re.split(r"[,|]", spec) if n.startswith("-"))
    return names


def roff_escape(s):
    s = s.replace("\\", "\\e").replace("-", "\\-")
    return s


def inline(s):
    """Markdown inline -> roff: `code` and **bold** bold, *em* italic."""
    out = []
    for part in re.split(r"(`[^`]*`)", s):
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append("\\fB" + roff_escape(part[1:-1]) + "\\fR")
        else:
            p = roff_escape(part)
            p = re.sub(r"\*\*(.+?)\*\*", r"\\fB\1\\fR", p)
            p = re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"\\fI\1\\fR", p)
            out.append(p)
    return "".join(out)


def line_safe(s):
    # A roff line must not start with . or ' (a request).
    return "\\&" + s if s[:1] in (".", "'") else s


def th(name, section, version, title):
    return [
        f'.TH {name.upper()} {section} "" "usmc {version}" "{title}"',
    ]


def option_item(name, desc):
    spec = name.split(" ", 1)
    names = ", ".join("\\fB" + roff_escape(n) + "\\fR" for n in re.split(r"[,|]", spec[0]))
    rest = " \\fI" + roff_escape(spec[1]) + "\\fR" if len(spec) > 1 else ""
    return [".TP", line_safe(names + rest), line_safe(roff_escape(desc))]


def command_page(cmd, h, version, subs):
    name = cmd.replace(" ", "-")
    out = th(name, 1, version, "usmc manual")
    out += [".SH NAME", f"{roff_escape(name)} \\- {roff_escape(h['description'])}"]
    out += [".SH SYNOPSIS", ".B " + roff_escape(h["usage"]).replace(" ", "\\ ", 0)]
    out += [".SH DESCRIPTION", line_safe(roff_escape(h["description"]) + ".")]
    for p in h["prose"]:
        out.append(line_safe(roff_escape(p)))
    if h["sections"].get("Positionals"):
        out.append(".SH ARGUMENTS")
        for n, d in h["sections"]["Positionals"]:
            out += option_item(n, d)
    if h["sections"].get("Options"):
        out.append(".SH OPTIONS")
        for n, d in h["sections"]["Options"]:
            out += option_item(n, d)
    if h["sections"].get("Subcommands"):
        out.append(".SH COMMANDS")
        for n, d in h["sections"]["Subcommands"]:
            out += [".TP", f"\\fBusmc {roff_escape(n)}\\fR (\\fBusmc\\-{roff_escape(n)}\\fR(1))",
                    line_safe(roff_escape(d))]
        out += [".SH FILES", ".TP", "\\fI/etc/usmc.conf\\fR",
                "which sockets may use SMC (\\fBusmc.conf\\fR(5))",
                ".TP", "\\fIusmc.service\\fR",
                "the systemd unit that runs \\fBusmc setup\\fR at boot and "
                "\\fBusmc setup \\-\\-remove\\fR when stopped"]
    see = ["\\fBusmc\\fR(1)"] if cmd != "usmc" else []
    see += [f"\\fBusmc\\-{s}\\fR(1)" for s in subs if cmd == "usmc"]
    see.append("\\fBusmc.conf\\fR(5)")
    out += [".SH SEE ALSO", ", ".join(see),
            ".PP", "/usr/share/doc/usmc/ (README.md, preload.md, config.md, observability.md)"]
    return "\n".join(out) + "\n"


def md_sections(md):
    """docs/config.md -> [(level, title, body lines)]."""
    secs, cur = [], None
    fence = False
    for line in md.split("\n"):
        if line.startswith("```"):
            fence = not fence
        m = None if fence else re.match(r"^(#+) (.*)$", line)
        if m:
            cur = (len(m.group(1)), m.group(2), [])
            secs.append(cur)
        elif cur:
            cur[2].append(line)
    return secs


def md_body(lines):
    out, para = [], []

    def flush():
        if para:
            out.append(".PP")
            out.append(line_safe(inline(" ".join(para))))
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            flush()
            out += [".PP", ".nf", ".RS 4"]
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                out.append(line_safe(roff_escape(lines[i])))
                i += 1
            out += [".RE", ".fi"]
        elif line.startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                    rows.append(cells)
                i += 1
            i -= 1
            for r in rows[1:]:  # the first row is the header
                out += [".TP", line_safe(inline(r[0]) + (" (" + inline(r[1]) + ")" if len(r) > 2 else ""))]
                out.append(line_safe(inline(r[-1])))
        elif re.match(r"^(- |\d+\. )", line):
            flush()
            m = re.match(r"^(- |\d+\. )(.*)$", line)
            mark = "\\(bu" if m.group(1) == "- " else m.group(1).strip()
            item = [m.group(2)]
            while i + 1 < len(lines) and lines[i + 1].startswith("  ") and lines[i + 1].strip():
                i += 1
                item.append(lines[i].strip())
            out += [f'.IP "{mark}" 4', line_safe(inline(" ".join(item)))]
        elif not line.strip():
            flush()
        else:
            para.append(line.strip())
        i += 1
    flush()
    return out


def conf_page(md, version):
    secs = md_sections(md)
    out = th("usmc.conf", 5, version, "usmc manual")
    out += [".SH NAME", "usmc.conf \\- which sockets of programs under usmc run may use SMC"]
    out += [".SH SYNOPSIS", "\\fI/etc/usmc.conf\\fR, or the file \\fB$USMC_CONF\\fR names"]
    intro = secs[0][2]
    out += [".SH DESCRIPTION"] + md_body(intro)
    wanted = {"The config file": "FORMAT", "Addresses": None, "Example `/etc/usmc.conf`": "EXAMPLE",
              "Errors": "ERRORS", "Environment variables": "ENVIRONMENT"}
    for level, title, body in secs:
        if title not in wanted:
            continue
        if wanted[title]:
            out.append(".SH " + wanted[title])
        else:
            out.append(".SS " + inline(title))
        out += md_body(body)
    out += [".SH FILES", ".TP", "\\fI/etc/usmc.conf\\fR", "the config file (no file: no file rules)",
            ".TP", "\\fI/usr/share/doc/usmc/examples/usmc.conf\\fR", "the example above",
            ".SH SEE ALSO", "\\fBusmc\\fR(1), \\fBusmc\\-run\\fR(1); /usr/share/doc/usmc/config.md"]
    return "\n".join(out) + "\n"


def conf_example(md):
    m = re.search(r"### Example `/etc/usmc.conf`\s*\n+```\n(.*?)```", md, re.S)
    return m.group(1)


def completion(top, subs_help):
    subs = " ".join(n for n, _ in top["sections"].get("Subcommands", []))
    cases = []
    for sub, h in subs_help.items():
        opts = " ".join(sorted(declared_options(h)))
        cases.append(f"    {sub}) opts='{opts}' ;;")
    return f"""# bash completion for usmc; generated by packaging/gen_docs.py from usmc --help.
_usmc() {{
  local cur=${{COMP_WORDS[COMP_CWORD]}} sub='' i opts=''
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${{COMP_WORDS[i]}} in
      -*) ;;
      *) sub=${{COMP_WORDS[i]}}; break ;;
    esac
  done
  if [[ -z $sub ]]; then
    COMPREPLY=($(compgen -W '{subs} -h --help' -- "$cur"))
    return
  fi
  case $sub in
{chr(10).join(cases)}
  esac
  if [[ $sub == run ]]; then
    # usmc run [-q] PROGRAM ARGS...: after the first word that is not an
    # option, complete as for PROGRAM itself.
    local j
    for ((j = i + 1; j < COMP_CWORD; j++)); do
      case ${{COMP_WORDS[j]}} in
        --) ((j++)); break ;;
        -*) ;;
        *) break ;;
      esac
    done
    if ((j < COMP_CWORD)) && declare -F _command_offset > /dev/null; then
      _command_offset "$j"
      return
    fi
    if [[ $cur != -* ]]; then
      COMPREPLY=($(compgen -c -- "$cur"))
      return
    fi
  fi
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  elif declare -F _filedir > /dev/null; then
    _filedir
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}}
complete -F _usmc usmc
"""


def write_gz(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # mtime 0 and no name: the same input gives the same bytes (lintian,
    # reproducible builds).
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
            f.write(text.encode())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--usmc")
    ap.add_argument("--config-md")
    ap.add_argument("--version", default="0")
    ap.add_argument("--subcommands", default="")
    ap.add_argument("--out")
    ap.add_argument("--options-of-help", help="print the options a help text declares")
    ap.add_argument("--options-of-text", help="print every option a text names")
    a = ap.parse_args()
    if a.options_of_help:
        print("\n".join(sorted(declared_options(parse_help(open(a.options_of_help).read())))))
        return 0
    if a.options_of_text:
        print("\n".join(sorted(option_names(open(a.options_of_text).read()))))
        return 0
    top = parse_help(run_help(a.usmc, None))
    listed = [n for n, _ in top["sections"].get("Subcommands", [])]
    subs = a.subcommands.replace(";", " ").split()
    if sorted(listed) != sorted(subs):
        print(f"gen_docs.py: usmc --help lists {listed}, packaging/CMakeLists.txt {subs}",
              file=sys.stderr)
        return 1
    subs_help = {s: parse_help(run_help(a.usmc, s)) for s in subs}
    write_gz(f"{a.out}/man1/usmc.1.gz", command_page("usmc", top, a.version, subs))
    for s, h in subs_help.items():
        write_gz(f"{a.out}/man1/usmc-{s}.1.gz", command_page(f"usmc {s}", h, a.version, subs))
    md = open(a.config_md).read()
    write_gz(f"{a.out}/man5/usmc.conf.5.gz", conf_page(md, a.version))
    with open(f"{a.out}/usmc.bash-completion", "w") as f:
        f.write(completion(top, subs_help))
    with open(f"{a.out}/usmc.conf.example", "w") as f:
        f.write("# /etc/usmc.conf example (usmc.conf(5)); copied from docs/config.md.\n")
        f.write(conf_example(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
