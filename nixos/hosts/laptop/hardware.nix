# STAND-IN, to be regenerated on the machine itself. From the live ISO, or
# later on the installed laptop, run:
#
#   nixos-generate-config --show-hardware-config --no-filesystems > hosts/laptop/hardware.nix
#
# (--no-filesystems: disk.nix, through disko, declares the file systems.)
# The values below are plausible for an Intel laptop with one NVMe drive.
{ config, lib, modulesPath, ... }:
{
  imports = [ (modulesPath + "/installer/scan/not-detected.nix") ];

  boot.initrd.availableKernelModules = [
    "xhci_pci"
    "thunderbolt"
    "nvme"
    "usb_storage"
    "sd_mod"
  ];
  boot.initrd.kernelModules = [ ];
  boot.kernelModules = [ "kvm-intel" ];
  boot.extraModulePackages = [ ];

  networking.useDHCP = lib.mkDefault true;

  nixpkgs.hostPlatform = lib.mkDefault "x86_64-linux";
  hardware.cpu.intel.updateMicrocode = lib.mkDefault config.hardware.enableRedistributableFirmware;
}
