# vibe-agent %post: user, state directory, and systemd presets (like %systemd_post).
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers vibe-agent.conf || :
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles --create vibe-agent.conf || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    if [ "$1" -eq 1 ]; then
        systemctl --no-reload preset vibe-agent.service || :
    fi
fi
