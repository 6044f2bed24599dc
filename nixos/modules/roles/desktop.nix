# Role: graphical workstation. Used by hosts/desktop, and by hosts/laptop
# through roles/laptop.nix.
{ pkgs, ... }:
{
  # GNOME on Wayland, with GDM as the login screen.
  services.displayManager.gdm.enable = true;
  services.desktopManager.gnome.enable = true;

  # Sound through PipeWire (also serving PulseAudio and ALSA clients).
  services.pulseaudio.enable = false;
  security.rtkit.enable = true;
  services.pipewire = {
    enable = true;
    alsa.enable = true;
    pulse.enable = true;
  };

  # NetworkManager for wired (and, on the laptop, Wi-Fi) networking;
  # common.nix adds alice to the networkmanager group when it is on.
  networking.networkmanager.enable = true;

  # Printing, with discovery of network printers.
  services.printing.enable = true;
  services.avahi = {
    enable = true;
    nssmdns4 = true;
  };

  programs.firefox.enable = true;

  # Desktop-only packages; the fleet-wide list is modules/packages.nix.
  environment.systemPackages = with pkgs; [
    wl-clipboard
  ];
}
