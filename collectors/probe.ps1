<#
ProxyLogon exposure probe. Document version: "exchange-probe/1", minor version 1.5 (minor
versions keep the schema string; docs/probe.md, "Versioning rules").

Runs on one Exchange server (2010, 2013, 2016 or 2019) under Windows PowerShell 5.1 and
prints ONE JSON document on standard output: the ExSetup.exe file version, installed
Exchange updates, roles, the .NET Framework 4.x release, the interim mitigations (URL
Rewrite rules with their content, UM services, ECP/OAB application pools, EOMT traces), the
Test-ProxyLogon indicators of compromise and whether the OWA/ECP web.config files hold an
unresolved %ExchangeInstallDir% (left by an update run without elevation), and what the
investigation after the fix can build on (1.3): the tail of the Microsoft Safety Scanner log,
Defender's detection history, how far back the logs the indicator checks read reach (from 1.4
each HttpProxy protocol folder, an emptied one too), and the .aspx/.ashx files in the OWA/ECP
front-end folders, the IIS root and its aspnet_client (names and times, never content; from 1.5
hidden ones too, the IIS root where the Default Web Site is, and which of these folders were
there). Every field and the versioning rules: docs/probe.md.

Read-only: it reads the registry, services, IIS configuration, one event log, log files,
four web.config files, Defender's detection history and file names and times. It changes
nothing, writes no file and takes no parameters.
Bounded: 90 s overall, at most 200 files and 50 findings per check; a check cut short
sets indicators.truncated. At most 200 rewrite rules of 20 conditions each are described,
texts cut at 1,024 characters; a rule cut so is marked truncated. Of each MSERT log at most
the last 2,000 lines and 262,144 characters are printed, of Defender's detections the newest
50 (5 resources each, cut at 260 characters), and at most 200 candidate files. It never
aborts: a part that fails adds "<part>: <message>"
to errors and leaves its field empty.

By hand, as an administrator on the server, from cmd.exe (64-bit Windows PowerShell; the
output is ASCII, so the file is too):
    powershell.exe -NoProfile -ExecutionPolicy Bypass -File probe.ps1 > probe-%COMPUTERNAME%.json
From a PowerShell prompt, where ">" would write UTF-16, pipe it instead:
    powershell.exe -NoProfile -ExecutionPolicy Bypass -File .\probe.ps1 | Set-Content -Encoding ASCII probe.json

Kept conventional on purpose (tests/collectors/test_probe_script.py): no switch
statements, no labelled loops, no call operator, no aliases; comment lines, blank lines
and indentation are free (the collector strips them before sending it on standard input),
code is not: after that compaction the script must stay within a budget (docs/probe.md,
"Small") that keeps it readable in full.
#>

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$start = [DateTime]::UtcNow
$deadline = $start.AddSeconds(90)
$MaxFiles = 200
$MaxFindings = 50
$MaxRules = 200
$MaxConditions = 20
$MaxText = 1024
$MaxLines = 2000
$MaxChars = 262144
$inv = [Globalization.CultureInfo]::InvariantCulture
$List = [Collections.Generic.List[object]]

# ---- helpers ----------------------------------------------------------------

# A trimmed plain string (never a decorated PSObject), or $null when empty.
function Str($value) {
    $text = ([string]$value).Trim()
    if ($text) {
        return $text
    }
}

# A date/time as UTC "yyyy-MM-ddTHH:mm:ssZ", or $null (also for $null). A text (a log line or a log's
# DateTime column) gives its leading ISO timestamp, e.g. "2021-03-03T04:05:06.789Z".
function Iso($value) {
    if ($null -eq $value) {
        return
    }
    if ($value -is [string]) {
        $value = [regex]::Match($value, '^\d{4}-\d\d-\d\dT[\d:.]+Z?').Value
    }
    try {
        return ([DateTime]$value).ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", $inv)
    } catch {
        # not a date: no output, so $null
    }
}

# An install date as "yyyy-MM-dd", or $null. Only "yyyyMMdd" (what Windows Installer and the
# Exchange updates write) and "yyyy-MM-dd" are read, exactly, in the invariant culture: another
# text is in some user's short-date format ("03/06/2021" is 3 June in en-GB), which a cast would
# read month first in every locale (6 March). A day read too early makes a scan run before the
# fix count as after it; null leaves the fix time to the time the server was seen patched.
function Day($value) {
    foreach ($form in 'yyyyMMdd', 'yyyy-MM-dd') {
        try {
            return [DateTime]::ParseExact([string]$value, $form, $inv).ToString('yyyy-MM-dd', $inv)
        } catch {
            # not in this form: the next one, then no output, so $null
        }
    }
}

# Text on one line, at most $max characters.
function Line($text, $max) {
    $one = ([string]$text -replace '\s+', ' ').Trim()
    return $one.Substring(0, [Math]::Min($one.Length, $max))
}

# Text exactly as configured (a pattern's spaces count), cut at $MaxText characters; a cut
# sets $state.cut, which marks the rule being read truncated (it then never counts).
function Cut($value) {
    $text = [string]$value
    if ($text.Length -gt $MaxText) {
        $state.cut = $true
    }
    return $text.Substring(0, [Math]::Min($text.Length, $MaxText))
}

# Record a failed part as "<part>: <message>" (one line, at most 240 characters).
function Fault($part, $err) {
    $errors.Add((Line ($part + ': ' + $err) 240))
}

# True (and marks the indicators truncated) once the overall deadline has passed.
function Expired {
    if ([DateTime]::UtcNow -gt $deadline) {
        $ind.truncated = $true
        return $true
    }
}

# Add one finding to an indicator list, at most $MaxFindings per list.
function Hit($key, $detail, $path, $time) {
    if ($key -like 'CVE*') {
        $state.cve = $true
    }
    if ($ind[$key].Count -ge $MaxFindings) {
        $ind.truncated = $true
        return
    }
    $ind[$key].Add([ordered]@{ detail = (Line $detail 300); path = (Str $path); time = (Iso $time) })
}

# The newest $MaxFiles *.log files under <Exchange>\<folder> (recursive, hidden ones too: -Force, from
# 1.5); more sets truncated. Remembers the oldest creation time among them (for log_window_days).
# A folder that is missing or cannot be listed throws: the check records it in errors
# instead of passing for clean.
function Files($folder) {
    $all = @(Get-ChildItem ($ex + $folder) -Filter '*.log' -Recurse -File -Force | Sort-Object LastWriteTimeUtc -Descending)
    if ($all.Count -gt $MaxFiles) {
        $ind.truncated = $true
    }
    foreach ($file in @($all | Select-Object -First $MaxFiles)) {
        if ($null -eq $state.oldest -or $file.CreationTimeUtc -lt $state.oldest) {
            $state.oldest = $file.CreationTimeUtc
        }
        $file
    }
}

# One installed update, deduplicated by KB number.
function Upd($name, $date) {
    $text = Str $name
    if ($text -match 'KB\d{6,8}') {
        $kb = $Matches[0].ToUpperInvariant()
        if (-not $state.kbs.ContainsKey($kb)) {
            $state.kbs[$kb] = $true
            $doc.installed_updates.Add([ordered]@{ kb = $kb; name = $text; installed_on = (Day $date) })
        }
    }
}

# The last lines of a text file (e.g. %SystemRoot%\debug\msert.log), whole, as they stand: at
# most $MaxLines lines and $MaxChars characters (a line that does not fit ends the tail),
# with the file's last write (UTC), the server's UTC offset then (the log's times are local)
# and whether lines were left out. Nothing ($null) when the file does not exist; any other
# failure throws to the caller's part. The lines go out as [string[]]: Get-Content's lines carry
# PSPath and other notes, which ConvertTo-Json would print as objects around each line.
# When lines were left out, also the lines of the WHOLE file that say what a run was and found
# (its start, kind, detections, result), the first $MaxFiles, each on one line and cut at
# $MaxText: a detection in a run that fell out of the tail is still seen. Select-String reads
# the file line by line and stops after them. A hidden log is read too (Get-Item -Force, 1.5:
# without it a hidden file is "not found").
function Tail($path) {
    try {
        $file = Get-Item -LiteralPath $path -Force
    } catch {
        if ($_.CategoryInfo.Category -ne 'ObjectNotFound') {
            throw
        }
        return
    }
    $lines = @(Get-Content -LiteralPath $path -Tail ($MaxLines + 1))
    $first = $lines.Count
    $size = 0
    while ($first -gt [Math]::Max(0, $lines.Count - $MaxLines) -and $size + ([string]$lines[$first - 1]).Length -le $MaxChars) {
        $first--
        $size += ([string]$lines[$first]).Length
    }
    $matched = $null
    if ($first) {
        $matched = [string[]]@(Select-String -LiteralPath $path -Pattern 'Threat Detected|^\s*Found |Started On|Scan Results:|Return code' | Select-Object -First $MaxFiles | ForEach-Object { Line $_.Line $MaxText })
    }
    [ordered]@{ written_at = (Iso $file.LastWriteTimeUtc); utc_offset_minutes = [int][TimeZoneInfo]::Local.GetUtcOffset($file.LastWriteTimeUtc).TotalMinutes; cut = $first -gt 0; lines = [string[]]@($lines | Select-Object -Skip $first); matches = $matched }
}

# ---- the document -----------------------------------------------------------

$errors = $List::new()
$state = @{ kbs = @{} }
$mit = [ordered]@{
    rewrite_rules = $List::new()
    rewrite_rule_details = $null
    url_rewrite_module = $null
    services = [ordered]@{}
    app_pools = [ordered]@{}
    eomt = $null
    defender_signature_version = $null
}
$ind = [ordered]@{
    'CVE-2021-26855' = $List::new()
    'CVE-2021-26857' = $List::new()
    'CVE-2021-26858' = $List::new()
    'CVE-2021-27065' = $List::new()
    suspicious_files = $List::new()
    log_window_days = $null
    truncated = $false
}
# Minor version 1.3: what the investigation after the fix needs. Null, or an empty list, until
# its part has read it.
$tr = [ordered]@{
    utc_offset_minutes = $null
    exsetup_written_at = $null
    msert_log = $null
    msert_old_log = $null
    defender = $null
    log_reach = $null
    candidates = $null
    candidates_truncated = $false
    log_reach_truncated = $false
    candidate_folders = $null
}
$doc = [ordered]@{
    schema = 'exchange-probe/1'
    host = [string]$env:COMPUTERNAME
    fqdn = $null
    collected_at = (Iso $start)
    exsetup_version = $null
    admin_display_version = $null
    install_path = $null
    product_line = $null
    installed_updates = $List::new()
    roles = $List::new()
    dotnet_release = $null
    mitigations = $mit
    indicators = $ind
    web_config = $null
    investigation = $tr
    errors = $errors
}
# The empty document, printed (with an error) only if serialising the real one fails.
$fallback = ConvertTo-Json -InputObject $doc -Depth 6 -Compress

# Safety net: an error outside the try blocks below is recorded and the next statement runs.
trap {
    Fault 'unexpected' $_
    continue
}

# ---- host -------------------------------------------------------------------

try {
    $net = [Net.NetworkInformation.IPGlobalProperties]::GetIPGlobalProperties()
    if ($net.DomainName) {
        $doc.fqdn = $net.HostName + '.' + $net.DomainName
    }
} catch {
    Fault 'fqdn' $_
}

# ---- Exchange Setup key, install path, roles ----------------------------------

try {
    foreach ($line in 'v15', 'v14') {
        $product = 'HKLM:\SOFTWARE\Microsoft\ExchangeServer\' + $line
        if (Test-Path ($product + '\Setup')) {
            $doc.product_line = $line
            $doc.install_path = Str (Get-ItemProperty ($product + '\Setup')).MsiInstallPath
            # Each installed role has a key beside Setup: MailboxRole, ClientAccessRole,
            # UnifiedMessagingRole, HubTransportRole, FrontendTransportRole, CafeRole,
            # EdgeTransportRole (reported as Edge).
            foreach ($key in @(Get-ChildItem $product)) {
                if ($key.PSChildName -match '^(Mailbox|ClientAccess|UnifiedMessaging|HubTransport|FrontendTransport|Cafe|Edge)(Transport)?Role$' -and -not $doc.roles.Contains($Matches[1])) {
                    $doc.roles.Add($Matches[1])
                }
            }
            break
        }
    }
} catch {
    Fault 'setup' $_
}

# ---- ExSetup.exe file version (the build that shows the Security Update) ------

try {
    if (-not $doc.install_path) {
        Fault 'exsetup' 'no ExchangeServer v15/v14 Setup key with MsiInstallPath'
    } else {
        $exe = Get-Item -LiteralPath (Join-Path $doc.install_path 'Bin\ExSetup.exe')
        $info = $exe.VersionInfo
        $doc.exsetup_version = '{0}.{1}.{2}.{3}' -f $info.FileMajorPart, $info.FileMinorPart, $info.FileBuildPart, $info.FilePrivatePart
        # When the fix reached the server as the server records it (1.3): a Security Update or
        # CU writes ExSetup.exe.
        $tr.exsetup_written_at = Iso $exe.LastWriteTimeUtc
    }
} catch {
    Fault 'exsetup' $_
}

# Only when the Exchange snap-in is already loaded (the probe never loads it); otherwise,
# or when it fails, null without an error: the field is optional.
try {
    $doc.admin_display_version = Str (Get-ExchangeServer $env:COMPUTERNAME -ErrorAction Ignore).AdminDisplayVersion
} catch {
    # no Exchange Management Shell in this session
}

# ---- installed updates and the URL Rewrite module ------------------------------

try {
    foreach ($app in @(Get-ItemProperty 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\*', 'HKLM:\SOFTWARE\Wow6432Node\Microsoft\Windows\CurrentVersion\Uninstall\*' -ErrorAction Ignore)) {
        $name = [string]$app.DisplayName
        if ($name -like 'Security Update for Exchange Server*' -or $name -like 'Update Rollup * for Exchange Server*') {
            Upd $name $app.InstallDate
        }
        if ($name -like '*IIS*URL*2*' -or $name -like '*URL*IIS*2*') {
            $mit.url_rewrite_module = Str $app.DisplayVersion
        }
    }
    # One key per update under Updates\Exchange 2013|2016|2019 (values PackageName, InstalledDate),
    # read after the Uninstall keys: Upd keeps a KB's first record, and these keys' InstalledDate
    # is a short date (KB 888535) that Day reads as null, while the Uninstall key's InstallDate
    # is yyyyMMdd. So a KB listed in both keeps its exact date; one only here has none.
    foreach ($key in @(Get-ChildItem 'HKLM:\SOFTWARE\Microsoft\Updates\Exchange 20*' -Recurse -ErrorAction Ignore)) {
        $values = $key | Get-ItemProperty
        Upd $values.PackageName $values.InstalledDate
    }
} catch {
    Fault 'installed_updates' $_
}

# ---- .NET Framework 4.x release ----------------------------------------------------

# The Release DWORD of NDP\v4\Full (e.g. 528049: 4.8 on Windows Server 2019), which decides
# the CUs a server can take. No key or no value: null without an error (no .NET Framework
# 4.x); any other failure (access denied, a value that is not a DWORD): null and a dotnet
# error.
try {
    $release = (Get-ItemProperty 'HKLM:\SOFTWARE\Microsoft\NET Framework Setup\NDP\v4\Full').Release
    if ($release -is [int]) {
        $doc.dotnet_release = $release
    } elseif ($null -ne $release) {
        Fault 'dotnet' 'Release is not a DWORD'
    }
} catch {
    if ($_.CategoryInfo.Category -ne 'ObjectNotFound') {
        Fault 'dotnet' $_
    }
}

# ---- services: Unified Messaging and Managed Availability ----------------------

# MSExchangeUM, MSExchangeUMCR, MSExchangeHM, MSExchangeHMRecovery; a service that does not
# exist is omitted. State: Running, Stopped, ...; StartMode: Auto, Manual, Disabled, ...
try {
    foreach ($service in @(Get-CimInstance Win32_Service -Filter "Name LIKE 'MSExchangeUM%' OR Name LIKE 'MSExchangeHM%'")) {
        $mit.services[[string]$service.Name] = [ordered]@{ status = (Str $service.State); start_mode = (Str $service.StartMode) }
    }
} catch {
    Fault 'services' $_
}

# ---- IIS: URL Rewrite rules and the ECP/OAB application pools -----------------

# Skipped on Exchange 2010 (the March 2021 IIS mitigations are for 2013-2019) and where
# IIS is not installed (Edge Transport): no rules, no pools, no error. Without the
# WebAdministration module rules and pools stay empty and errors says why. In both cases
# rewrite_rule_details stays null: not read.
$webAdmin = $doc.product_line -ne 'v14' -and (Test-Path "$env:windir\System32\inetsrv\config\applicationHost.config")
if ($webAdmin) {
    try {
        Import-Module WebAdministration
    } catch {
        Fault 'iis' $_
        $webAdmin = $false
    }
}

if ($webAdmin) {
    # Server level, then Default Web Site (whose list also shows inherited rules).
    foreach ($site in 'MACHINE/WEBROOT/APPHOST', 'IIS:\Sites\Default Web Site') {
        try {
            foreach ($rule in @(Get-WebConfiguration -PSPath $site -Filter 'system.webServer/rewrite/rules/rule')) {
                if ($rule.name -and $mit.rewrite_rules -notcontains $rule.name) {
                    $mit.rewrite_rules.Add([string]$rule.name)
                }
            }
        } catch {
            # Without the URL Rewrite module the section does not exist: no rules, no error.
            if ($mit.url_rewrite_module) {
                Fault 'rewrite_rules' $_
            }
        }
    }
    # Each rule in full, per site (rewrite_rule_details): a site's list includes the rules it
    # inherits from server level, in the order IIS runs them. Values as IIS reports them
    # (defaults filled in: enabled true, logicalGrouping MatchAll, patternSyntax ECMAScript,
    # ignoreCase true); texts cut at $MaxText characters. A rule past the first $MaxRules is
    # left out and counted in one rewrite_rule_details error, so a short list never passes for
    # complete. A rule with a text cut, or with more than $MaxConditions conditions (written
    # with the first of them), is marked truncated: it stays in the list (it may stop
    # processing before a later rule) but never counts as a mitigation.
    $mit.rewrite_rule_details = $List::new()
    $state.left = 0
    try {
        foreach ($site in @(Get-ChildItem 'IIS:\Sites')) {
            foreach ($rule in @(Get-WebConfiguration -PSPath ('IIS:\Sites\' + $site.Name) -Filter 'system.webServer/rewrite/rules/rule')) {
                $conditions = @($rule.conditions.Collection | Where-Object { $null -ne $_ })
                if ($mit.rewrite_rule_details.Count -ge $MaxRules) {
                    $state.left++
                    continue
                }
                $state.cut = $conditions.Count -gt $MaxConditions
                $state.rule = [ordered]@{ site = (Cut $site.Name); name = (Cut $rule.name); match_url = (Cut $rule.match.url); match_negate = ([string]$rule.match.negate -eq 'True'); conditions = $List::new(); logical_grouping = (Cut $rule.conditions.logicalGrouping); action = (Cut $rule.action.type); enabled = ([string]$rule.enabled -ne 'False'); stop_processing = ([string]$rule.stopProcessing -eq 'True'); pattern_syntax = (Cut $rule.patternSyntax) }
                foreach ($condition in @($conditions | Select-Object -First $MaxConditions)) {
                    $state.rule.conditions.Add([ordered]@{ input = (Cut $condition.input); pattern = (Cut $condition.pattern); negate = ([string]$condition.negate -eq 'True'); ignore_case = ([string]$condition.ignoreCase -ne 'False') })
                }
                $state.rule.truncated = $state.cut
                $mit.rewrite_rule_details.Add($state.rule)
            }
        }
    } catch {
        # As above: without the URL Rewrite module there is no section and no rule.
        if ($mit.url_rewrite_module) {
            Fault 'rewrite_rule_details' $_
        }
    }
    if ($state.left) {
        Fault 'rewrite_rule_details' "$($state.left) rules left out (over $MaxRules rules)"
    }
    # Both pools exist on every 2013-2019 server with IIS: a pool that cannot be read (absent,
    # or access denied) is omitted and errors says why.
    foreach ($pool in 'MSExchangeECPAppPool', 'MSExchangeOABAppPool') {
        try {
            $item = Get-Item ('IIS:\AppPools\' + $pool)
            $mit.app_pools[$pool] = [ordered]@{ state = (Str (Get-WebAppPoolState $pool).Value); auto_start = ([string]$item.autoStart -eq 'True') }
        } catch {
            Fault ('app_pool ' + $pool) $_
        }
    }
}

# ---- OWA and ECP web.config files ------------------------------------------------

# An update run from a non-elevated prompt can leave the literal %ExchangeInstallDir% in
# these files, and OWA or ECP then fail. Per file: fine (read, no literal), unresolved (the
# literal is there), missing (not found), or unreadable (errors says why; never "fine").
# Read only: Get-Content opens each file for reading. "missing" only when the file is not
# there (ObjectNotFound): Test-Path answers false on "access denied" too, which would hide a
# file this account cannot read. Null when there is no install path.
if ($doc.install_path) {
    $doc.web_config = $List::new()
    foreach ($dir in 'ClientAccess\Owa', 'ClientAccess\ecp', 'FrontEnd\HttpProxy\owa', 'FrontEnd\HttpProxy\ecp') {
        $config = $doc.install_path.TrimEnd('\') + '\' + $dir + '\web.config'
        $seen = 'unreadable'
        try {
            $text = Get-Content -LiteralPath $config -Raw
            $seen = 'fine'
            if ($text -like '*%ExchangeInstallDir%*') {
                $seen = 'unresolved'
            }
        } catch {
            if ($_.CategoryInfo.Category -eq 'ObjectNotFound') {
                $seen = 'missing'
            } else {
                $seen = 'unreadable'
                Fault 'web_config' $_
            }
        }
        $doc.web_config.Add([ordered]@{ path = $config; state = $seen })
    }
}

# ---- EOMT traces and Defender signatures ---------------------------------------

try {
    $key = Get-Item 'HKLM:\SOFTWARE\MSERTBootstrap\PatchState' -ErrorAction Ignore
    if ($key) {
        $mit.eomt = [ordered]@{}
        foreach ($valueName in $key.GetValueNames()) {
            $mit.eomt[$valueName] = [string]$key.GetValue($valueName)
        }
    }
} catch {
    Fault 'eomt' $_
}

try {
    if (Get-Command 'Get-MpComputerStatus' -ErrorAction Ignore) {
        $mit.defender_signature_version = Str (Get-MpComputerStatus).AntivirusSignatureVersion
    }
} catch {
    Fault 'defender' $_
}

# ---- indicators of compromise (the Test-ProxyLogon checks) --------------------

# The log checks need Exchange 2013 or later; on 2010 only CVE-2021-26857 applies.
if ($doc.product_line -eq 'v15' -and $doc.install_path) {
    $ex = $doc.install_path.TrimEnd('\') + '\'
}

# ---- the investigation after the fix (1.3) ---------------------------------------

# A patch does not remove a back door planted before it. What shows whether anyone looked, and
# whether the logs could show an intrusion at all; printed raw and bounded, read by
# collectors/traces.py.

# The Microsoft Safety Scanner's log, %SystemRoot%\debug\msert.log (EOMT appends the previous
# one to msert.old.log before each run): the tails, as they stand. Times in them are local:
# with the server's UTC offset now, and each file's at its last write.
try {
    $tr.utc_offset_minutes = [int][TimeZoneInfo]::Local.GetUtcOffset($start).TotalMinutes
    $tr.msert_log = Tail "$env:SystemRoot\debug\msert.log"
    $tr.msert_old_log = Tail "$env:SystemRoot\debug\msert.old.log"
} catch {
    Fault 'msert_log' $_
}

# Defender's detection history (Get-MpThreatDetection), the newest $MaxFindings, each with its
# threat's name (Get-MpThreat). Without the cmdlets: available false, no error; when Defender
# does not answer (another antivirus product is active, the service is off): available false
# and a defender_detections error.
$tr.defender = [ordered]@{ available = $false; detections = $null; truncated = $false }
try {
    if (Get-Command 'Get-MpThreatDetection' -ErrorAction Ignore) {
        $state.names = @{}
        foreach ($threat in @(Get-MpThreat)) {
            $state.names[[string]$threat.ThreatID] = Str $threat.ThreatName
        }
        $found = @(Get-MpThreatDetection | Sort-Object InitialDetectionTime -Descending)
        $tr.defender.detections = $List::new()
        foreach ($entry in @($found | Select-Object -First $MaxFindings)) {
            $tr.defender.detections.Add([ordered]@{ threat_id = [string]$entry.ThreatID; threat = $state.names[[string]$entry.ThreatID]; detected_at = (Iso $entry.InitialDetectionTime); resources = @($entry.Resources | Select-Object -First 5 | ForEach-Object { Line $_ 260 }); action_success = $entry.ActionSuccess })
        }
        $tr.defender.truncated = $found.Count -gt $MaxFindings
        $tr.defender.available = $true
    }
} catch {
    Fault 'defender_detections' $_
}

# How far back each log the indicator checks read reaches (1.4): for HttpProxy, every protocol
# folder (each direct subfolder, hidden ones too: Ecp, Owa, ...) with the creation time of the
# oldest file in it (its subfolders included), or null when it holds none. Each rolls over on its
# own, so one busy folder reaching back far says nothing of the others, and an emptied one (an
# intruder cleared HttpProxy\Ecp, what the CVE-2021-27065 check reads) must show. Hidden folders
# and files count (-Force, 1.5), as the CVE checks read them. For ECP\Server
# and OABGeneratorLog, their folder alike. At most $MaxFindings folders per log (past them
# log_reach_truncated). Every folder of a log is read before any is added: one that cannot be
# read leaves the whole log out, and errors says why. A log not there, or HttpProxy without any
# folder: one entry with oldest null, no error. The Application event log: its oldest event.
$tr.log_reach = $List::new()
foreach ($log in 'HttpProxy', 'ECP\Server', 'OABGeneratorLog', 'Application') {
    $seen = $null
    try {
        if ($log -eq 'Application') {
            $seen = Iso (Get-WinEvent -LogName Application -MaxEvents 1 -Oldest).TimeCreated
        } elseif ($ex) {
            $dirs = @(Get-Item -LiteralPath ($ex + 'Logging\' + $log) -Force)
            if ($log -eq 'HttpProxy') {
                $dirs = @(Get-ChildItem -LiteralPath $dirs[0].FullName -Directory -Force)
            }
            $rows = @($dirs | Select-Object -First $MaxFindings | ForEach-Object { [ordered]@{ log = $log; folder = $_.FullName; oldest = (Iso (Get-ChildItem -LiteralPath $_.FullName -Recurse -File -Force | Sort-Object CreationTimeUtc | Select-Object -First 1).CreationTimeUtc) } })
            foreach ($row in $rows) {
                $tr.log_reach.Add($row)
            }
            if ($dirs.Count -gt $MaxFindings) {
                $tr.log_reach_truncated = $true
            }
            if ($dirs.Count) {
                continue
            }
        } else {
            continue
        }
    } catch {
        if ($_.CategoryInfo.Category -ne 'ObjectNotFound' -and $_.FullyQualifiedErrorId -notlike 'NoMatching*') {
            Fault 'log_reach' $_
            continue
        }
    }
    $tr.log_reach.Add([ordered]@{ log = $log; oldest = $seen })
}

# Possible web shells: .aspx/.ashx files where the March 2021 attackers put them: the IIS root
# (directly: the whole site is huge), and recursively its aspnet_client and OWA's and ECP's auth
# folders. Hidden and system files and folders too (-Force, 1.5): "attrib +h +s shell.aspx" hides
# a file from a plain listing, and IIS still serves it. Names, sizes and times only: no file is
# opened.
# The IIS root (1.5) is the Default Web Site's folder (else site id 1's): its application "/"
# and that one's virtual directory "/", as applicationHost.config holds it (read as text and
# parsed in memory: PowerShell's [xml] resolves no external entity and caps entity expansion),
# with %SystemDrive% and the like expanded. A 32-bit PowerShell on 64-bit Windows sees
# SysWOW64 as System32 (WOW64 file system redirection), where no applicationHost.config is:
# there it is read through "sysnative", the real System32 (PROCESSOR_ARCHITEW6432 is set in a
# WOW64 process only; [Environment]::Is64BitProcess says the same, one more member to allow).
# Any failure (the file not there, naming no such folder, access denied, not XML) is a
# candidates error, and the folder then listed, %SystemDrive%\inetpub\wwwroot, is not claimed
# to be the IIS root (iis_root false): the search may have looked in the wrong place. No Join-Path on it: Windows PowerShell's throws for a drive that
# does not exist (a moved inetpub's volume gone), which must read as a folder not there.
# candidate_folders (1.5) says of each folder whether it was there: one that is not is no
# error, but a reader must see it (an IIS root not there means the shells were not looked for).
$tr.candidates = $List::new()
$tr.candidate_folders = $List::new()
$root = "$env:SystemDrive\inetpub\wwwroot"
$iis = $null
$sys = 'System32'
if ($env:PROCESSOR_ARCHITEW6432) {
    $sys = 'sysnative'
}
try {
    $sites = @(([xml](Get-Content -LiteralPath "$env:windir\$sys\inetsrv\config\applicationHost.config" -Raw)).configuration.'system.applicationHost'.sites.site)
    $site = @($sites | Where-Object { $_.name -eq 'Default Web Site' }) + @($sites | Where-Object { $_.id -eq '1' })
    $path = @(@($site[0].application | Where-Object { $_.path -eq '/' }).virtualDirectory | Where-Object { $_.path -eq '/' })[0].physicalPath
    if (-not $path) {
        throw 'applicationHost.config names no folder of the Default Web Site'
    }
    $root = [Environment]::ExpandEnvironmentVariables($path)
    $iis = $root
} catch {
    Fault 'candidates' $_
}
$dirs = @($root, ($root.TrimEnd('\') + '\aspnet_client'))
if ($ex) {
    $dirs += ($ex + 'FrontEnd\HttpProxy\owa\auth'), ($ex + 'FrontEnd\HttpProxy\ecp\auth')
}
foreach ($dir in $dirs) {
    $there = $true
    try {
        foreach ($file in @(Get-ChildItem -LiteralPath $dir -Recurse:($dir -ne $root) -File -Force | Where-Object { $_.Name -match '\.as[hp]x$' })) {
            if ($tr.candidates.Count -ge $MaxFiles) {
                $tr.candidates_truncated = $true
                break
            }
            $tr.candidates.Add([ordered]@{ path = $file.FullName; size = $file.Length; created = (Iso $file.CreationTimeUtc); modified = (Iso $file.LastWriteTimeUtc) })
        }
    } catch {
        if ($_.CategoryInfo.Category -eq 'ObjectNotFound') {
            $there = $false
        } else {
            Fault 'candidates' $_
        }
    }
    $tr.candidate_folders.Add([ordered]@{ path = $dir; present = $there; iis_root = ($dir -eq $iis) })
}

if ($ex) {
    # CVE-2021-26855 (all HttpProxy logs) and CVE-2021-27065 (a) (HttpProxy\Ecp): only files
    # containing "ServerInfo~" are parsed as CSV, and only their lines that contain it.
    try {
        foreach ($file in @(Files 'Logging\HttpProxy')) {
            if (Expired) {
                break
            }
            if (-not ($file | Select-String -Pattern 'ServerInfo~' -SimpleMatch -Quiet)) {
                continue
            }
            # The column names: the "#Fields:" line (or a bare header line) near the top.
            $columns = (@($file | Get-Content -TotalCount 8) -match '^(#Fields: )?DateTime,' | Select-Object -First 1) -replace '^#Fields: ' -split ','
            if ($columns.Count -lt 2) {
                continue
            }
            foreach ($row in @($file | Select-String -Pattern 'ServerInfo~' -SimpleMatch | ForEach-Object { $_.Line } | ConvertFrom-Csv -Header $columns)) {
                $anchor = [string]$row.AnchorMailbox
                $detail = "$anchor from $($row.ClientIpAddress) to $($row.UrlStem) HTTP $($row.HttpStatus)"
                if ($anchor -like 'ServerInfo~*/*' -and $anchor -notlike 'ServerInfo~*/autodiscover*' -and $anchor -notlike 'ServerInfo~localhost*/*') {
                    Hit 'CVE-2021-26855' $detail $file.FullName $row.DateTime
                }
                if ($file.FullName -like '*\HttpProxy\Ecp\*' -and $anchor -like 'ServerInfo~*/*Reset*VirtualDirectory#' -and $row.HttpStatus -eq '200') {
                    Hit 'CVE-2021-27065' ('web shell possibly downloaded: ' + $detail) $file.FullName $row.DateTime
                }
            }
        }
    } catch {
        Fault 'CVE-2021-26855' $_
    }

    # CVE-2021-26858: OAB generator downloads to a path outside <Exchange>\ClientAccess\OAB.
    try {
        foreach ($file in @(Files 'Logging\OABGeneratorLog')) {
            if (Expired) {
                break
            }
            foreach ($match in @($file | Select-String -Pattern 'Download failed and temporary file (.*?) needs to be removed')) {
                $target = $match.Matches[0].Groups[1].Value
                if ($target -notlike ("'" + $ex + 'ClientAccess\OAB*')) {
                    Hit 'CVE-2021-26858' ('OAB download to ' + $target) $file.FullName $match.Line
                }
            }
        }
    } catch {
        Fault 'CVE-2021-26858' $_
    }

    # CVE-2021-27065 (b): Set-*VirtualDirectory with markup in a URL, in the ECP server log.
    try {
        foreach ($file in @(Files 'Logging\ECP\Server')) {
            if (Expired) {
                break
            }
            $match = $file | Select-String -Pattern 'Set-.+VirtualDirectory.+?(?=Url).+<\w+.*>(.*?)<\/\w+>.+?(?=VirtualDirectory)' -List
            if ($match) {
                Hit 'CVE-2021-27065' ('Set-*VirtualDirectory with markup, line ' + $match.LineNumber) $file.FullName $match.Line
            }
        }
    } catch {
        Fault 'CVE-2021-27065' $_
    }
}

# CVE-2021-26857: UM errors with System.InvalidCastException (Exchange 2010 too).
try {
    $events = @(Get-WinEvent -FilterHashtable @{ LogName = 'Application'; ProviderName = 'MSExchange Unified Messaging'; Level = 2 } -MaxEvents 500)
    if ($events.Count -ge 500) {
        $ind.truncated = $true
    }
    foreach ($entry in $events) {
        if ($entry.Message -like '*System.InvalidCastException*') {
            Hit 'CVE-2021-26857' ('UM error event ' + $entry.Id + ' with System.InvalidCastException') $null $entry.TimeCreated
        }
    }
} catch {
    # "No events were found" and "no such provider" are the normal, clean answers.
    if ($_.FullyQualifiedErrorId -notlike 'NoMatching*') {
        Fault 'CVE-2021-26857' $_
    }
}

# Suspicious files, looked for only when a CVE check found something (as Test-ProxyLogon).
if ($state.cve -and -not (Expired)) {
    try {
        # LSASS dumps in C:\root and %windir%\Temp, archives anywhere in %ProgramData%; hidden ones
        # too (-Force, 1.5).
        $found = @(Get-ChildItem 'C:\root', "$env:windir\Temp" -Filter 'lsass.*dmp' -Recurse -File -Force -ErrorAction Ignore)
        $found += @(Get-ChildItem $env:ProgramData -Include '*.7z', '*.zip', '*.rar' -Recurse -File -Force -ErrorAction Ignore)
        foreach ($item in $found) {
            Hit 'suspicious_files' ('LSASS dump or archive ' + $item.Name) $item.FullName $item.LastWriteTimeUtc
        }
    } catch {
        Fault 'suspicious_files' $_
    }
}

if ($state.oldest) {
    $ind.log_window_days = [Math]::Round(([DateTime]::UtcNow - $state.oldest).TotalDays, 1)
}

# ---- output: one JSON document, non-ASCII characters escaped --------------------

try {
    $json = ConvertTo-Json -InputObject $doc -Depth 6 -Compress
} catch {
    $json = $fallback.Replace('"errors":[]', '"errors":["json: serialisation failed"]')
}
$json = [regex]::Replace($json, '[^\x00-\x7F]', { param($m) '\u{0:x4}' -f [int][char]$m.Value })
Write-Output $json
