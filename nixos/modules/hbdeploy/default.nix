# hbdeploy's side on a host: services.hbdeploy.magicRollback makes magic rollback cover a
# reboot. A deployment hbdeploy has not confirmed yet is recorded in /nix/var/hbdeploy; if the
# host reboots (or crashes) before the confirmation, the watchdog dies with the boot, and this
# unit restores the previous generation early in the next one (see boot-restore.sh).
{ config, lib, pkgs, ... }:
let
  cfg = config.services.hbdeploy.magicRollback;
in
{
  options.services.hbdeploy.magicRollback.enable =
    lib.mkEnableOption "restoring the previous system generation at boot when a deployment by hbdeploy was never confirmed before the host rebooted"
    // {
      default = true;
    };

  config = {
    systemd.services.hbdeploy-boot-restore = lib.mkIf cfg.enable {
      description = "hbdeploy: restore a deployment never confirmed before the reboot";
      # Once the host is up: switching while the boot transaction still runs could wait on it.
      wantedBy = [ "multi-user.target" ];
      after = [ "multi-user.target" ];
      # It may switch the system itself: a switch must not stop or restart it.
      restartIfChanged = false;
      stopIfChanged = false;
      unitConfig.ConditionPathExistsGlob = "/nix/var/hbdeploy/pending-*";
      path = [
        config.nix.package
        pkgs.coreutils
        pkgs.gnused
        pkgs.util-linux
      ];
      serviceConfig = {
        Type = "oneshot";
        ExecStart = "${pkgs.runtimeShell} ${./boot-restore.sh}";
      };
    };
  };
}
