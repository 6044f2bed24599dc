# System packages installed on every host. To add one: put its nixpkgs
# attribute name in the list (look names up with `nix search nixpkgs NAME`
# or on search.nixos.org), commit, and run `hbdeploy apply --all`.
# Packages for one role only go in that role (roles/desktop.nix, ...).
{ pkgs, ... }:
{
  environment.systemPackages = with pkgs; [
    # shell and editing
    git
    vim
    tmux
    # finding things
    ripgrep
    fd
    tree
    jq
    # network
    curl
    wget
    rsync
    dnsutils # dig
    # looking at the system
    htop
    lsof
    pciutils # lspci
    usbutils # lsusb
  ];
}
