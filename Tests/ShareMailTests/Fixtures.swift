import SeedTeam
import ShareMail

func seedEngine() throws -> PolicyEngine {
    let (configuration, _) = try ConfigurationLoader.load(text: seedTOML, file: "seed.toml")
    return PolicyEngine(configuration: configuration)
}

let internet = Submission(channel: .smtp, clientAddress: IPAddress("198.51.100.7"))
func staffLogin(_ login: String) -> Submission {
    Submission(channel: .smtp, login: login, clientAddress: IPAddress("192.0.2.10"))
}
let localSubmission = Submission(channel: .local)

func message(
    _ submission: Submission, from sender: String, to recipients: [String],
    headers: [(String, String)] = [], smtpUTF8: Bool = false
) -> MessageFacts {
    MessageFacts(
        submission: submission, sender: EnvelopeAddress(sender), recipients: recipients.map { EnvelopeAddress($0) },
        headers: headers.map { Header(name: $0.0, value: $0.1) }, smtpUTF8: smtpUTF8, uniqueToken: "token")
}

extension Decision {
    var added: [String] { addRecipients.map(\.value) }

    func change(_ name: String, occurrence: Int = 1) -> HeaderChange? {
        headerChanges.first { $0.name.lowercased() == name.lowercased() && $0.occurrence == occurrence && $0.operation == .change }
    }

    func deletes(_ name: String) -> [Int] {
        headerChanges.filter { $0.name.lowercased() == name.lowercased() && $0.operation == .delete }.map(\.occurrence)
    }

    func adds(_ name: String) -> HeaderChange? {
        headerChanges.first { $0.name.lowercased() == name.lowercased() && $0.operation == .add }
    }

    var isAccept: Bool { action == .accept }
}
