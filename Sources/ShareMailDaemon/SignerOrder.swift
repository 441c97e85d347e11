/// Where the DKIM signers sit in Postfix's two milter lists, as `doctor`
/// reports it. A signer must come after sharemail (it signs the From that
/// sharemail wrote) and must be in both lists: staff mail submitted with the
/// sendmail command (webmail, scripts) goes through non_smtpd_milters only,
/// and would otherwise leave unsigned while SMTP mail is signed.
///
/// Pure: the list values in, findings out. The order within each list is
/// `DoctorChecks.milterList`'s (OK "sharemail runs before …", or FAIL with the
/// reordered list as the fix); this adds the list that lacks a signer.
public struct SignerOrder {
    /// `smtpd_milters` and `non_smtpd_milters`, split into entries.
    public let smtpdMilters: [String]
    public let nonSMTPDMilters: [String]
    /// Is this entry sharemail's socket.
    public let isSharemail: (String) -> Bool
    /// Is this entry a signer (OpenDKIM, rspamd, dkimpy-milter: by name or usual port).
    public let isSigner: (String) -> Bool

    public init(
        smtpdMilters: [String], nonSMTPDMilters: [String], isSharemail: @escaping (String) -> Bool,
        isSigner: @escaping (String) -> Bool
    ) {
        self.smtpdMilters = smtpdMilters
        self.nonSMTPDMilters = nonSMTPDMilters
        self.isSharemail = isSharemail
        self.isSigner = isSigner
    }

    public func findings() -> [Finding] {
        let lists = [("smtpd_milters", smtpdMilters), ("non_smtpd_milters", nonSMTPDMilters)]
        let signers = lists.map { ($0.0, $0.1.filter(isSigner)) }
        guard signers.contains(where: { !$0.1.isEmpty }) else { return [] }
        var findings: [Finding] = []
        for (name, entries) in lists where entries.contains(where: isSharemail) && !entries.contains(where: isSigner) {
            let (otherName, otherSigners) = signers.first { $0.0 != name }!
            guard !otherSigners.isEmpty else { continue }
            let path = name == "smtpd_milters" ? "SMTP mail (staff submitting on 587/465)" : "mail from the sendmail command (webmail, scripts)"
            var fixed = entries
            fixed.insert(contentsOf: otherSigners, at: (entries.firstIndex(where: isSharemail) ?? -1) + 1)
            findings.append(
                Finding(
                    level: .warn,
                    text: "\(otherName) has the DKIM signer \(otherSigners.joined(separator: ", ")) but \(name) has none: \(path) leaves unsigned",
                    fix: "postconf -e '\(name) = \(fixed.joined(separator: ", "))'"))
        }
        return findings
    }
}
