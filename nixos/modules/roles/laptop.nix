# Role: laptop = the workstation role plus power management and Wi-Fi.
{ ... }:
{
  imports = [ ./desktop.nix ];

  # ── Power management ───────────────────────────────────────────────────
  powerManagement.enable = true;
  # Balanced / power-saver / performance profiles (switchable in GNOME).
  # (TLP is the alternative; the two must not run together.)
  services.power-profiles-daemon.enable = true;
  services.upower.enable = true;

  # Closing the lid suspends; after two hours asleep on battery the laptop
  # hibernates to its swap partition (hosts/laptop/disk.nix, sized for that).
  services.logind.settings.Login = {
    HandleLidSwitch = "suspend-then-hibernate";
    HandleLidSwitchExternalPower = "suspend";
    HandleLidSwitchDocked = "ignore";
  };
  systemd.sleep.settings.Sleep.HibernateDelaySec = "2h";

  # ── Wi-Fi and Bluetooth ────────────────────────────────────────────────
  # NetworkManager (enabled by the desktop role) manages Wi-Fi; connect with
  # GNOME's network menu or `nmcli device wifi connect SSID --ask`. The
  # firmware comes from hardware.enableRedistributableFirmware (common.nix).
  networking.networkmanager.wifi.powersave = true;
  hardware.bluetooth.enable = true;
}
