# vibe-agent %preun: stop and disable on erase, not on upgrade (like %systemd_preun).
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now vibe-agent.service || :
fi
