"""A certificate authority made for a test run (python3-cryptography), and
server certificates it issues for localhost and 127.0.0.1, written where the
cluster's postgres user can read them."""
import base64
import datetime
import hashlib
import ipaddress
import os
import pwd
import ssl
import warnings

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Authority:
    def __init__(self, directory, owner=None):
        """owner: the user the server runs as (it must read the key)."""
        self.dir = directory
        self.owner = owner
        os.makedirs(directory, exist_ok=True)
        os.chmod(directory, 0o755)
        now = datetime.datetime.now(datetime.timezone.utc)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (x509.CertificateBuilder()
                     .subject_name(_name("resumable_ws test CA")).issuer_name(_name("resumable_ws test CA"))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                  content_commitment=False, key_encipherment=False,
                                                  data_encipherment=False, key_agreement=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.ca_file = os.path.join(directory, "ca.pem")
        with open(self.ca_file, "wb") as f:
            f.write(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, cn, days=1, key_type="ec"):
        """A new key (EC P-256, or RSA 2048 with key_type="rsa") and a
        certificate for localhost, 127.0.0.1 and 127.0.0.2; returns (cert PEM bytes, key PEM
        bytes, serial, SPKI pin for Chromium)."""
        if key_type == "rsa":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        serial = x509.random_serial_number()
        cert = (x509.CertificateBuilder()
                .subject_name(_name(cn)).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(serial)
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=days))
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.2"))]),
                    critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(self.key, hashes.SHA256()))
        spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return cert_pem, key_pem, serial, pin

    def write(self, name, data, private=False):
        """Writes a file the server can read (0600 and owned by it if private),
        replacing any old one at once (as certbot's symlink swap would)."""
        path = os.path.join(self.dir, name)
        tmp = path + ".new"
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o600 if private else 0o644)
        if self.owner:
            pw = pwd.getpwnam(self.owner)
            os.chown(tmp, pw.pw_uid, pw.pw_gid)
        os.replace(tmp, path)
        return path

    def client_context(self, **kwargs):
        """A client context that trusts only this CA."""
        ctx = ssl.create_default_context(cafile=self.ca_file)
        with warnings.catch_warnings():
            # Old TLS versions are deprecated: the tests ask for them on purpose.
            warnings.simplefilter("ignore", DeprecationWarning)
            for name, value in kwargs.items():
                setattr(ctx, name, value)
        return ctx


def peer_certificate(port, ca, host="127.0.0.1"):
    """The certificate a new TLS connection is shown, as a cryptography object."""
    import socket
    ctx = ca.client_context()
    with socket.create_connection((host, port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
