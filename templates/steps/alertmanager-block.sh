# shellcheck shell=sh
# Puts hx-backup's route and receivers into the live Alertmanager config, each
# between marker comments, or (action=remove) takes them out; every other line
# stays as it was. The result is checked with amtool on a temp copy first: the
# live file is replaced only by a config that passes, and only when it differs.
# Then Alertmanager re-reads it. The blocks' hash, as installed, goes into
# the install manifest (manifest_entry) for the host's drift check.
# am_config, amtool, reload, stack, action (install|remove), route_block,
# receivers_block, manifest_entry: set by the caller.
: "${am_config?}" "${amtool?}" "${reload?}" "${stack?}" "${action?}" "${route_block?}" "${receivers_block?}" "${manifest_entry?}"

# The manifest line of the installed blocks: path, "@block", sha256 of every block line.
record_blocks() {
  blocks_hash=$(HX_STACK="$stack" awk -f - "$am_config" <<'EOF_AWK' | sha256sum
index($0, "# >>> hx-backup managed block (stack " ENVIRON["HX_STACK"] "):") { inside = 1 }
inside { print }
inside && /^[ \t]*# <<< hx-backup managed block <<</ { inside = 0 }
EOF_AWK
)
  install -d -o root -g root -m 0755 "$(dirname "$manifest_entry")"
  printf '%s\t@block\t-\t-\t%s\n' "$am_config" "${blocks_hash%% *}" >"$manifest_entry.tmp"
  chmod 0644 "$manifest_entry.tmp"
  mv -f "$manifest_entry.tmp" "$manifest_entry"
}

if [ "$action" = remove ]; then rm -f "$manifest_entry"; fi
# Edit the file itself when the path is a symlink (a rename would replace the link).
if [ -L "$am_config" ]; then am_config=$(readlink -f -- "$am_config"); fi
if [ ! -f "$am_config" ]; then
  if [ "$action" = remove ]; then exit 0; fi
  echo "hx-backup: Alertmanager config $am_config does not exist (alertmanagerConfigPath)" >&2
  exit 1
fi
tmp=$(mktemp "$am_config.hx-backup.XXXXXX")
trap 'rm -f "$tmp"' EXIT

# awk: strip earlier blocks; then (install) the route goes first under
# route.routes (which it creates if missing) and a fallback to the root
# receiver last, the receivers first under receivers (created at the end if
# missing), each indented as the file's own items.
# The blocks reach awk through its environment: -v would rewrite their backslashes.
if ! HX_ACTION="$action" HX_STACK="$stack" HX_ROUTE="$route_block" HX_RECEIVERS="$receivers_block" awk '
  function blank(l) { return l ~ /^[ \t]*(#.*)?$/ }
  function indent(l) { match(l, /^ */); return RLENGTH }
  function spaces(k,   s) { s = ""; while (k-- > 0) s = s " "; return s }
  function emit(block, pad, head,   parts, c, i) {
    out[++m] = pad "# >>> hx-backup managed block (stack " stack "): edited by pulumi up, do not edit >>>"
    if (head != "") out[++m] = pad head
    c = split(block, parts, "\n")
    for (i = 1; i <= c; i++) if (parts[i] != "") out[++m] = pad parts[i]
    out[++m] = pad "# <<< hx-backup managed block <<<"
  }
  # The indentation of the first item after line k (or fallback when none follows).
  function item_indent(k, fallback,   j) {
    for (j = k + 1; j <= n && blank(kept[j]); j++) ;
    if (j <= n && kept[j] ~ /^ *- / && indent(kept[j]) >= fallback) return indent(kept[j])
    return fallback
  }
  BEGIN { action = ENVIRON["HX_ACTION"]; stack = ENVIRON["HX_STACK"]; route_block = ENVIRON["HX_ROUTE"]; receivers_block = ENVIRON["HX_RECEIVERS"] }
  { all[++total] = $0 }
  END {
    n = 0; skipping = 0
    for (i = 1; i <= total; i++) {
      if (index(all[i], "# >>> hx-backup managed block (stack " stack "):") && all[i] ~ /^[ \t]*# >>> /) { skipping = 1; continue }
      if (skipping && all[i] ~ /^[ \t]*# <<< hx-backup managed block/) { skipping = 0; continue }
      if (!skipping) kept[++n] = all[i]
    }
    if (skipping) { print "an hx-backup block has no end marker" > "/dev/stderr"; exit 3 }
    # A routes: key hx-backup added stays while items of the file follow it.
    c = 0
    for (i = 1; i <= n; i++) {
      if (kept[i] ~ /^ *routes:[ \t]*# added by hx-backup$/) {
        for (j = i + 1; j <= n && blank(kept[j]); j++) ;
        if (!(j <= n && kept[j] ~ /^ *- / && indent(kept[j]) >= indent(kept[i]))) continue
      }
      kept2[++c] = kept[i]
    }
    n = c
    for (i = 1; i <= n; i++) kept[i] = kept2[i]
    if (action == "remove") { for (i = 1; i <= n; i++) print kept[i]; exit 0 }

    route = 0; receivers = 0
    for (i = 1; i <= n; i++) {
      if (kept[i] ~ /^route:[ \t]*(#.*)?$/) route = i
      if (kept[i] ~ /^receivers:[ \t]*(#.*)?$/) receivers = i
    }
    if (!route) { print "no top-level route: block (block style) to add the hx-backup route to" > "/dev/stderr"; exit 3 }
    for (j = route + 1; j <= n && blank(kept[j]); j++) ;
    if (j > n || indent(kept[j]) == 0) { print "the top-level route: has no body" > "/dev/stderr"; exit 3 }
    child = indent(kept[j])
    routes = 0; root_receiver = ""
    for (k = route + 1; k <= n; k++) {
      if (!blank(kept[k]) && indent(kept[k]) == 0) break
      if (kept[k] ~ ("^" spaces(child) "routes:[ \t]*(#.*)?$")) routes = k
      if (kept[k] ~ ("^" spaces(child) "receiver:")) {
        root_receiver = kept[k]; sub(/^[ ]*receiver:[ \t]*/, "", root_receiver); sub(/[ \t]*(#.*)?$/, "", root_receiver)
      }
    }
    body_end = k
    if (root_receiver == "") { print "the top-level route: names no receiver" > "/dev/stderr"; exit 3 }
    # An alert taken by a child route no longer reaches the root receiver. So
    # that hx-backup alerts still reach it when no route of the file takes them,
    # a last child sends them there.
    fallback = "- matchers:\n    - \"component=\\\"hx-backup\\\"\"\n  receiver: " root_receiver
    after = 0
    if (routes) {
      ii = item_indent(routes, child)
      for (k = routes + 1; k < body_end; k++) {
        if (blank(kept[k])) continue
        if (indent(kept[k]) > ii || (indent(kept[k]) == ii && kept[k] ~ /^ *- /)) { after = k; continue }
        break
      }
      if (!after) after = routes
    }
    m = 0
    for (i = 1; i <= n; i++) {
      out[++m] = kept[i]
      if (i == route && !routes) { out[++m] = spaces(child) "routes: # added by hx-backup"; emit(route_block, spaces(child), ""); emit(fallback, spaces(child), "") }
      if (i == routes) emit(route_block, spaces(ii), "")
      if (routes && i == after) emit(fallback, spaces(ii), "")
      if (i == receivers) emit(receivers_block, spaces(item_indent(receivers, 0)), "")
    }
    if (!receivers) { emit(receivers_block, "", "receivers:") }
    for (i = 1; i <= m; i++) print out[i]
  }' "$am_config" >"$tmp"; then
  echo "hx-backup: could not edit $am_config (see above); it was not changed" >&2
  exit 1
fi

# awk ends every line with a newline; a file that had none at the end gets none.
if [ -s "$am_config" ] && [ -n "$(tail -c 1 "$am_config")" ]; then
  truncate -s -1 "$tmp"
fi
if cmp -s "$tmp" "$am_config"; then
  # Nothing to write; a reload that failed last time is tried again.
  if [ "$action" = install ]; then record_blocks; fi
  sh -c "$reload"
  exit 0
fi
if ! check=$("$amtool" check-config "$tmp" 2>&1); then
  printf '%s\n' "$check" >&2
  echo "hx-backup: the edited Alertmanager config fails amtool check-config; $am_config was not changed" >&2
  exit 1
fi
chmod --reference="$am_config" "$tmp"
chown --reference="$am_config" "$tmp"
mv -f "$tmp" "$am_config"
if [ "$action" = install ]; then record_blocks; fi
sh -c "$reload"
