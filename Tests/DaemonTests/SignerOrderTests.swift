import Testing

@testable import ShareMailDaemon

/// `doctor`'s check that a DKIM signer is in both milter lists, on list values alone.
@Suite("doctor: the DKIM signer in both milter lists")
struct SignerOrderTests {
    static let ours = "unix:/run/sharemail/milter.sock"
    static let opendkim = "local:/run/opendkim/opendkim.sock"

    func findings(smtpd: [String], nonSMTPD: [String]) -> [Finding] {
        SignerOrder(
            smtpdMilters: smtpd, nonSMTPDMilters: nonSMTPD, isSharemail: { $0 == Self.ours },
            isSigner: { entry in DoctorChecks.signerHints.contains { entry.lowercased().contains($0) } }
        ).findings()
    }

    @Test("no signer anywhere, or the signer after sharemail in both lists: nothing to say")
    func nothingToSay() {
        #expect(findings(smtpd: [Self.ours], nonSMTPD: [Self.ours]).isEmpty)
        #expect(findings(smtpd: [Self.ours, Self.opendkim], nonSMTPD: [Self.ours, Self.opendkim]).isEmpty)
    }

    @Test("a signer in smtpd_milters only: mail from sendmail leaves unsigned, and the fix puts it after sharemail")
    func signerMissingFromNonSMTPD() throws {
        let result = findings(smtpd: [Self.ours, "inet:127.0.0.1:8891"], nonSMTPD: [Self.ours])
        let warning = try #require(result.first)
        #expect(result.count == 1 && warning.level == .warn, "\(result)")
        #expect(warning.text.contains("non_smtpd_milters has none") && warning.text.contains("sendmail"), "\(warning)")
        #expect(warning.fix == "postconf -e 'non_smtpd_milters = \(Self.ours), inet:127.0.0.1:8891'", "\(warning)")
    }

    @Test("a signer in non_smtpd_milters only: SMTP mail leaves unsigned")
    func signerMissingFromSMTPD() throws {
        let result = findings(smtpd: [Self.ours, "inet:127.0.0.1:9999"], nonSMTPD: [Self.ours, Self.opendkim])
        let warning = try #require(result.first)
        #expect(result.count == 1 && warning.level == .warn, "\(result)")
        #expect(warning.text.contains("smtpd_milters has none") && warning.text.contains("SMTP mail"), "\(warning)")
        #expect(warning.fix == "postconf -e 'smtpd_milters = \(Self.ours), \(Self.opendkim), inet:127.0.0.1:9999'", "\(warning)")
    }

    @Test("a list without sharemail is milterList's FAIL, not this check's")
    func withoutSharemail() {
        #expect(findings(smtpd: [Self.ours, Self.opendkim], nonSMTPD: []).isEmpty)
    }
}
