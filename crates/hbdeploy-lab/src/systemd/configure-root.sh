#!/bin/sh
# Turns a fresh debootstrap root ($1) into the base root of the hbdeploy lab's systemd hosts.
# Run once per cached root, by the lab (crates/hbdeploy-lab/src/systemd/root.rs), as root.
# Everything that differs between hosts (address, host key, hostname, nix.conf) is bound in by
# the lab at boot; nothing here is per host.
set -eu
root=$1

# Debootstrap's own leftovers, apt's downloads, and keys every host would otherwise share.
rm -rf "$root/debootstrap" "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*_*
rm -f "$root"/etc/ssh/ssh_host_*
# An empty machine-id: each boot gets its own (systemd makes a transient one).
: >"$root/etc/machine-id"

# No CAP_AUDIT_CONTROL in the container: the login uid cannot be set, so do not require it.
sed -i 's/^session\([[:space:]]*\)required\([[:space:]]*\)pam_loginuid\.so/session\1optional\2pam_loginuid.so/' \
  "$root/etc/pam.d/sshd"

# A login's PAM session as on NixOS, whose sshd runs pam_systemd but neither pam_motd (only
# where `users.motd` is set, and then a file, no scripts) nor pam_mail: Debian's runs the
# scripts of /etc/update-motd.d and looks for mail at every login, about 10 ms of CPU each
# that no NixOS host spends.
sed -i '/pam_motd\.so/d; /pam_mail\.so/d' "$root/etc/pam.d/sshd"

# Debian's sshd would listen on every address of the shared network: the lab runs its own.
for unit in ssh.service ssh.socket sshd.service; do
  ln -sfn /dev/null "$root/etc/systemd/system/$unit"
done
rm -f "$root/etc/systemd/system/multi-user.target.wants/ssh.service" \
  "$root/etc/systemd/system/sockets.target.wants/ssh.socket"

# The lab's sshd: the configuration and host key of the lab's state directory (bound in at
# /var/lib/hbdeploy-lab), the pid file and log the toy systems' activations use.
cat >"$root/etc/systemd/system/hbdeploy-lab-sshd.service" <<'UNIT'
[Unit]
Description=sshd of the hbdeploy lab host
After=network.target hbdeploy-lab-boot.service

[Service]
ExecStartPre=/bin/mkdir -p /run/sshd
ExecStart=/usr/sbin/sshd -D -f /var/lib/hbdeploy-lab/sshd_config -E /var/lib/hbdeploy-lab/sshd.log
ExecReload=/bin/kill -HUP $MAINPID
KillMode=process
PIDFile=/run/sshd.pid

[Install]
WantedBy=multi-user.target
UNIT

# At boot, the toy system's boot default becomes the booted and the running system, as a
# NixOS boot loader would do.
cat >"$root/usr/local/sbin/hbdeploy-lab-boot" <<'SCRIPT'
#!/bin/sh
default=/var/lib/hbdeploy-lab/boot-default
if [ -e "$default" ]; then
  next=$(readlink -f "$default")
  ln -sfn "$next" /run/booted-system
  ln -sfn "$next" /run/current-system
fi
SCRIPT
chmod 755 "$root/usr/local/sbin/hbdeploy-lab-boot"
cat >"$root/etc/systemd/system/hbdeploy-lab-boot.service" <<'UNIT'
[Unit]
Description=hbdeploy lab: boot the toy system's boot default
DefaultDependencies=no
After=local-fs.target
Before=multi-user.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/hbdeploy-lab-boot

[Install]
WantedBy=multi-user.target
UNIT
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
for unit in hbdeploy-lab-sshd.service hbdeploy-lab-boot.service; do
  ln -sfn "/etc/systemd/system/$unit" "$root/etc/systemd/system/multi-user.target.wants/$unit"
done

# Units that only cost boot time in a container of the lab.
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
  fstrim.timer systemd-networkd-wait-online.service console-getty.service; do
  ln -sfn /dev/null "$root/etc/systemd/system/$unit"
done

# The directories the lab binds its per-host state onto.
mkdir -p "$root/var/lib/hbdeploy-lab" "$root/nix/var/nix/profiles"
