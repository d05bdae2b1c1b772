# The .deb, by CPack's DEB generator (docs/packaging.md says why not
# dpkg-buildpackage): one binary package "usmc" from `cmake --install`.
# scripts/package.sh configures with the Debian prefix and build flags,
# runs cpack and lintian.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME usmc)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "usmc developers <usmc@example.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "Shared Memory Communications (SMC-D) in user space for TCP programs")
# CPack puts the summary first and indents these lines itself ("." for the
# empty one).
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "usmc runs unmodified, dynamically linked TCP programs so that each TCP
connection whose peer also runs usmc moves its bytes through shared memory
(SMC-D, RFC 7609) instead of the TCP/IP stack, while every other connection
stays plain TCP byte for byte.

The package holds the usmc command (usmc run, setup, ss, stats, chk, bench),
the LD_PRELOAD interposer, the eBPF program that negotiates SMC on the TCP
handshake, and a systemd unit that attaches that program at boot.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Runtime libraries as Debian names them: dpkg-shlibdeps on the binaries.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The maintainer scripts call deb-systemd-helper / deb-systemd-invoke.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "init-system-helpers (>= 1.54~)")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_CURRENT_SOURCE_DIR}/postinst ${CMAKE_CURRENT_SOURCE_DIR}/prerm
    ${CMAKE_CURRENT_SOURCE_DIR}/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_STRIP_FILES TRUE)
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
include(CPack)
