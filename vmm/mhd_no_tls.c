/* Lets the static ember-vmm link Debian's libmicrohttpd.a without GnuTLS.
 *
 * Debian builds libmicrohttpd with HTTPS support, so libmicrohttpd.a
 * references GnuTLS. ember-vmm is linked -static (start-up time), and a
 * static GnuTLS cannot be had: it needs p11-kit, which Debian ships only as a
 * shared library. ember-vmm serves its API on a Unix socket and never starts
 * a daemon with MHD_USE_TLS, so the only GnuTLS calls libmicrohttpd makes are
 * gnutls_global_init()/gnutls_global_deinit() from its library constructor
 * and destructor; they are no-ops here. Every other entry point is
 * reachable only in TLS mode and aborts if it is ever called. As a bonus,
 * GnuTLS's own initialisation (config files, entropy) is not paid at every
 * VMM start.
 *
 * Linked only into the static executables (vmm/CMakeLists.txt); the shared
 * libmicrohttpd that tests use keeps its real GnuTLS. */
#include <stdlib.h>

int gnutls_global_init(void) { return 0; }
void gnutls_global_deinit(void) {}
void* (*gnutls_malloc)(size_t) = malloc;

#define EMBER_NO_TLS(name) \
  void name(void);         \
  void name(void) { abort(); }

EMBER_NO_TLS(gnutls_alpn_set_protocols)
EMBER_NO_TLS(gnutls_bye)
EMBER_NO_TLS(gnutls_certificate_allocate_credentials)
EMBER_NO_TLS(gnutls_certificate_free_credentials)
EMBER_NO_TLS(gnutls_certificate_server_set_request)
EMBER_NO_TLS(gnutls_certificate_set_dh_params)
EMBER_NO_TLS(gnutls_certificate_set_retrieve_function2)
EMBER_NO_TLS(gnutls_certificate_set_retrieve_function3)
EMBER_NO_TLS(gnutls_certificate_set_x509_key_mem)
EMBER_NO_TLS(gnutls_certificate_set_x509_key_mem2)
EMBER_NO_TLS(gnutls_certificate_set_x509_trust_mem)
EMBER_NO_TLS(gnutls_cipher_get)
EMBER_NO_TLS(gnutls_credentials_set)
EMBER_NO_TLS(gnutls_deinit)
EMBER_NO_TLS(gnutls_dh_params_deinit)
EMBER_NO_TLS(gnutls_dh_params_import_pkcs3)
EMBER_NO_TLS(gnutls_dh_params_init)
EMBER_NO_TLS(gnutls_handshake)
EMBER_NO_TLS(gnutls_init)
EMBER_NO_TLS(gnutls_priority_deinit)
EMBER_NO_TLS(gnutls_priority_init)
EMBER_NO_TLS(gnutls_priority_set)
EMBER_NO_TLS(gnutls_protocol_get_version)
EMBER_NO_TLS(gnutls_psk_allocate_server_credentials)
EMBER_NO_TLS(gnutls_psk_free_server_credentials)
EMBER_NO_TLS(gnutls_psk_set_server_credentials_function)
EMBER_NO_TLS(gnutls_record_check_pending)
EMBER_NO_TLS(gnutls_record_get_direction)
EMBER_NO_TLS(gnutls_record_recv)
EMBER_NO_TLS(gnutls_record_send)
EMBER_NO_TLS(gnutls_session_get_ptr)
EMBER_NO_TLS(gnutls_session_set_ptr)
EMBER_NO_TLS(gnutls_strerror)
EMBER_NO_TLS(gnutls_transport_set_int2)
