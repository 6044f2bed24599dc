# Role: headless server. It is the home network's HTTPS front door: Caddy,
# as a reverse proxy, answers on https://server.home.arpa and forwards to a
# web application listening on 127.0.0.1:8080 on this host. Add a site per
# application under services.caddy.virtualHosts.
#
# home.arpa names cannot get public (ACME) certificates, so Caddy issues them
# from its own internal CA ("tls internal"). Trust that CA on the clients:
# its root certificate is pki/authorities/local/root.crt inside Caddy's data
# directory (under services.caddy.dataDir, /var/lib/caddy by default).
{ ... }:
{
  services.caddy = {
    enable = true;
    virtualHosts."server.home.arpa".extraConfig = ''
      tls internal
      reverse_proxy 127.0.0.1:8080
    '';
  };
  networking.firewall.allowedTCPPorts = [
    80 # redirects to HTTPS
    443
  ];

  # Headless: no desktop, no sleeping.
  systemd.sleep.settings.Sleep = {
    AllowSuspend = "no";
    AllowHibernation = "no";
    AllowSuspendThenHibernate = "no";
    AllowHybridSleep = "no";
  };
}
