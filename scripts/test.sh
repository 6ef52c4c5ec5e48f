#!/usr/bin/env bash
# Install what the test suite needs into the current Python environment, then run it.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m "not browser"`).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

"$PY" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
"$PY" -m pip install --quiet -e ".[test]" || { echo "pip install failed" >&2; exit 1; }

"$PY" -m ruff check . || exit 1

# The browser tests (tests/browser, marker `browser`) drive Debian's Chromium through
# Playwright (from the test extra; no `playwright install`). Get Chromium unless the pytest
# arguments leave those tests out (-m "not browser", or only paths outside tests/browser).
wants_browser() {
    local prev="" a any_path=0 browser_path=0
    for a in "$@"; do
        if [ "$prev" = "-m" ]; then
            case "$a" in *"not browser"*) return 1 ;; esac
        fi
        case "$a" in
            -m*"not browser"*) return 1 ;;
            -*) ;;
            *)
                if [ "$prev" != "-m" ] && [ "$prev" != "-k" ] && [ -e "${a%%::*}" ]; then
                    any_path=1
                    case "${a%%::*}" in
                        . | ./ | tests | tests/ | ./tests | ./tests/ | tests/browser* | ./tests/browser*)
                            browser_path=1 ;;
                    esac
                fi
                ;;
        esac
        prev="$a"
    done
    [ "$any_path" -eq 0 ] || [ "$browser_path" -eq 1 ]
}

if wants_browser "$@" && [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian's chromium for the browser tests (apt-get)" >&2
        log=$(mktemp)
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >"$log" 2>&1; then
            tail -20 "$log" >&2
            echo "error: could not install chromium with apt-get; the browser tests need" \
                 "/usr/bin/chromium (or deselect them: -m \"not browser\")" >&2
            exit 1
        fi
        rm -f "$log"
    else
        echo "error: the browser tests need Debian's chromium at /usr/bin/chromium: run" \
             "\`apt-get install chromium\` as root, or deselect them with -m \"not browser\"" >&2
        exit 1
    fi
fi

# The across-hosts tests (tests/cluster/test_dask_hosts.py, tests/test_hosts.py) make
# network namespaces with iproute2's `ip`; they skip with the reason where that cannot be.
if ! command -v ip >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's iproute2 for the across-hosts tests (apt-get)" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2; } \
        >/dev/null 2>&1 || echo "warning: could not install iproute2; the across-hosts tests will skip" >&2
fi

"$PY" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "error: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
