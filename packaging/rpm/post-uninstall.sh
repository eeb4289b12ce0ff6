# vibe-agent %postun: reload systemd; restart on upgrade (like %systemd_postun_with_restart).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart vibe-agent.service || :
    fi
fi
